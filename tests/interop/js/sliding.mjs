// matrix-js-sdk's SlidingSync class (simplified sliding sync, MSC4186) against one homeserver:
// a room list sorted by recency, a room subscription with more state, new messages arriving.
//
//   MATRIX_BASE_URL=http://127.0.0.1:8008 node sliding.mjs
//
// Exits 0 when every step worked ("OK" on the last line), 1 with the failing step otherwise.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { SlidingSync, SlidingSyncEvent, SlidingSyncState } from "matrix-js-sdk/lib/sliding-sync.js";

const BASE_URL = process.env.MATRIX_BASE_URL;
const STEP_TIMEOUT_MS = 15_000;
const TOTAL_TIMEOUT_MS = 90_000;

if (!BASE_URL) {
    console.error("sliding.mjs: set MATRIX_BASE_URL to the homeserver's client API base URL");
    process.exit(2);
}
logger.setLevel?.(process.env.MATRIX_SDK_LOG ?? "error");

let step = "start";
function begin(name) {
    step = name;
    console.log(`step: ${name}`);
}

function check(condition, message) {
    if (!condition) throw new Error(`check failed: ${message}`);
}

/** Resolves once `predicate(...args)` holds for an `event` of `emitter` (or already holds). */
function waitFor(emitter, event, predicate, what) {
    return new Promise((resolve, reject) => {
        const listener = (...args) => {
            let value;
            try {
                value = predicate(...args);
            } catch (e) {
                done();
                reject(e);
                return;
            }
            if (value) {
                done();
                resolve(value);
            }
        };
        const done = () => {
            clearTimeout(timer);
            emitter.off(event, listener);
        };
        const timer = setTimeout(() => {
            emitter.off(event, listener);
            reject(new Error(`timed out after ${STEP_TIMEOUT_MS} ms waiting for ${what}`));
        }, STEP_TIMEOUT_MS);
        emitter.on(event, listener);
    });
}

async function registerClient(username) {
    const anonymous = sdk.createClient({ baseUrl: BASE_URL });
    const reply = await anonymous.registerRequest({
        username,
        password: "correct horse battery",
        auth: { type: "m.login.dummy" },
    });
    return sdk.createClient({
        baseUrl: BASE_URL,
        accessToken: reply.access_token,
        userId: reply.user_id,
        deviceId: reply.device_id,
    });
}

async function main() {
    const suffix = Date.now().toString(36);
    begin("register and create three rooms");
    const alice = await registerClient(`slide${suffix}`);
    const names = ["first", "second", "third"];
    const rooms = [];
    for (const name of names) {
        rooms.push((await alice.createRoom({ name })).room_id);
    }
    await alice.sendTextMessage(rooms[0], "bump the first room");

    begin("a room list: the count, every room with its name, most recent first");
    const list = {
        ranges: [[0, 9]],
        timeline_limit: 1,
        required_state: [["m.room.name", ""]],
    };
    const slidingSync = new SlidingSync(
        BASE_URL,
        new Map([["all", list]]),
        { timeline_limit: 5, required_state: [["*", "*"]] },
        alice,
        5000,
    );
    const seen = new Map();
    slidingSync.on(SlidingSyncEvent.RoomData, (roomId, data) => {
        const old = seen.get(roomId) ?? { timeline: [], required_state: [] };
        seen.set(roomId, {
            ...old,
            ...data,
            timeline: [...old.timeline, ...data.timeline],
            required_state: [...old.required_state, ...data.required_state],
        });
    });
    const firstDone = waitFor(
        slidingSync,
        SlidingSyncEvent.Lifecycle,
        (state, resp) => state === SlidingSyncState.Complete && resp && Object.keys(resp.rooms).length > 0,
        "the first sliding sync answer",
    );
    slidingSync.start();
    await firstDone;
    check(slidingSync.getListData("all").joinedCount === 3, "the list counts three rooms");
    for (let i = 0; i < 3; i++) {
        const data = seen.get(rooms[i]);
        check(data !== undefined, `room ${names[i]} was sent`);
        check(data.name === names[i], `room ${names[i]} has its name (got ${data.name})`);
        check(data.initial === true, `room ${names[i]} is sent initial`);
    }
    const byRecency = [...rooms].sort((a, b) => seen.get(b).bump_stamp - seen.get(a).bump_stamp);
    check(byRecency[0] === rooms[0], "the bumped room sorts first");
    check(
        seen.get(rooms[0]).timeline.at(-1).content.body === "bump the first room",
        "the list's one-event timeline is the newest message",
    );

    begin("a room subscription brings the room's whole state");
    const subscribed = waitFor(
        slidingSync,
        SlidingSyncEvent.RoomData,
        (roomId, data) =>
            roomId === rooms[1] && data.required_state.some((e) => e.type === "m.room.create"),
        "the subscribed room's state",
    );
    slidingSync.modifyRoomSubscriptions(new Set([rooms[1]]));
    await subscribed;

    begin("a new message arrives on the subscription");
    const arrived = waitFor(
        slidingSync,
        SlidingSyncEvent.RoomData,
        (roomId, data) =>
            roomId === rooms[1] && data.timeline.some((e) => e.content?.body === "hello, subscriber"),
        "the new message",
    );
    await alice.sendTextMessage(rooms[1], "hello, subscriber");
    await arrived;

    begin("a new room joins the list, with its name");
    let fourth;
    const counted = waitFor(
        slidingSync,
        SlidingSyncEvent.Lifecycle,
        (state) => state === SlidingSyncState.Complete && slidingSync.getListData("all").joinedCount === 4,
        "the list count to grow",
    );
    // The room's events land one by one: its name may come in a later answer than the room.
    const named = waitFor(
        slidingSync,
        SlidingSyncEvent.Lifecycle,
        (state) => state === SlidingSyncState.Complete && fourth && seen.get(fourth)?.name === "fourth",
        "the new room's name",
    );
    fourth = (await alice.createRoom({ name: "fourth" })).room_id;
    await counted;
    await named;
    slidingSync.stop();
}

const timer = setTimeout(() => {
    console.error(`sliding.mjs: no result after ${TOTAL_TIMEOUT_MS} ms (step: ${step})`);
    process.exit(1);
}, TOTAL_TIMEOUT_MS);
try {
    await main();
    clearTimeout(timer);
    console.log("OK");
    process.exit(0);
} catch (e) {
    console.error(`step "${step}" failed: ${e?.stack ?? e}`);
    process.exit(1);
}
