// matrix-js-sdk against one homeserver, used as a new user would: register, log in, start the
// client (it fetches /versions, /capabilities, /pushrules/, uploads a filter and syncs with
// it), create a room, invite, join, send, watch the timeline, redact, page back, leave.
//
//   MATRIX_BASE_URL=http://127.0.0.1:8008 node check.mjs
//
// Exits 0 when every step worked, 1 with the failing step on stderr otherwise. Every request
// the SDK made that got an error status is printed (method, path and status only: no tokens,
// no bodies), so a missing endpoint shows up even where the SDK copes with it.
// No end-to-end encryption: the rust crypto is never initialised.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const BASE_URL = process.env.MATRIX_BASE_URL;
const MESSAGES = 30;
const STEP_TIMEOUT_MS = 15_000;
const TOTAL_TIMEOUT_MS = 120_000;

if (!BASE_URL) {
    console.error("check.mjs: set MATRIX_BASE_URL to the homeserver's client API base URL");
    process.exit(2);
}
logger.setLevel?.(process.env.MATRIX_SDK_LOG ?? "error");

/** Requests answered with an error status, as "METHOD /path -> status". */
const failedRequests = [];

async function loggingFetch(input, init) {
    const started = Date.now();
    const response = await globalThis.fetch(input, init);
    if (process.env.MATRIX_CHECK_TRACE) {
        const url = new URL(input instanceof Request ? input.url : String(input));
        let summary = "";
        if (url.pathname.endsWith("/sync") && response.ok) {
            const body = await response.clone().json();
            const rooms = Object.entries(body.rooms?.join ?? {}).map(
                ([id, r]) => `${id.slice(0, 6)}:${r.timeline?.events?.length}${r.timeline?.limited ? "L" : ""}`,
            );
            summary = ` next=${body.next_batch} ${rooms.join(",")}`;
        }
        console.log(`trace ${Date.now() - started}ms ${init?.method ?? "GET"} ${url.pathname}${url.search} -> ${response.status}${summary}`);
    }
    if (!response.ok) {
        const url = new URL(input instanceof Request ? input.url : String(input));
        failedRequests.push(`${init?.method ?? "GET"} ${url.pathname} -> ${response.status}`);
    }
    return response;
}

let step = "start";
function begin(name) {
    step = name;
    console.log(`step: ${name}`);
}

function check(condition, message) {
    if (!condition) throw new Error(`check failed: ${message}`);
}

function equal(actual, expected, message) {
    const a = JSON.stringify(actual);
    const e = JSON.stringify(expected);
    if (a !== e) throw new Error(`check failed: ${message}\n  actual:   ${a}\n  expected: ${e}`);
}

/** Resolves once `predicate()` holds, re-checked on each `event` of `emitter`. */
function waitFor(emitter, event, predicate, what) {
    return new Promise((resolve, reject) => {
        const done = () => {
            clearTimeout(timer);
            emitter.off(event, listener);
        };
        const listener = () => {
            try {
                const value = predicate();
                if (value) {
                    done();
                    resolve(value);
                }
            } catch (e) {
                done();
                reject(e);
            }
        };
        const timer = setTimeout(() => {
            emitter.off(event, listener);
            reject(new Error(`timed out after ${STEP_TIMEOUT_MS} ms waiting for ${what}`));
        }, STEP_TIMEOUT_MS);
        emitter.on(event, listener);
        listener();
    });
}

const started = [];

/** Registers through the user-interactive auth dance: ask, read the flows, use m.login.dummy. */
async function register(username, password) {
    const anonymous = sdk.createClient({ baseUrl: BASE_URL, fetchFn: loggingFetch });
    let session;
    try {
        await anonymous.registerRequest({ username, password });
        throw new Error("registration without auth succeeded; expected a 401 with flows");
    } catch (e) {
        if (!(e instanceof sdk.MatrixError) || e.httpStatus !== 401) throw e;
        const flows = e.data.flows ?? [];
        check(
            flows.some((f) => f.stages.length === 1 && f.stages[0] === "m.login.dummy"),
            `registration offers a m.login.dummy flow (got ${JSON.stringify(flows)})`,
        );
        session = e.data.session;
    }
    const reply = await anonymous.registerRequest({
        username,
        password,
        auth: { type: "m.login.dummy", session },
    });
    check(reply.user_id.startsWith(`@${username}:`), `registered as @${username}`);
    return reply.user_id;
}

/** Logs in with a password and starts a syncing client on that new device. */
async function logIn(username, password, initialSyncLimit) {
    const anonymous = sdk.createClient({ baseUrl: BASE_URL, fetchFn: loggingFetch });
    const flows = await anonymous.loginFlows();
    check(
        flows.flows.some((f) => f.type === "m.login.password"),
        "the server offers m.login.password",
    );
    const login = await anonymous.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: username },
        password,
        initial_device_display_name: "js-sdk check",
    });
    const client = sdk.createClient({
        baseUrl: BASE_URL,
        accessToken: login.access_token,
        userId: login.user_id,
        deviceId: login.device_id,
        fetchFn: loggingFetch,
        timelineSupport: true,
    });
    started.push(client);
    await client.startClient({ initialSyncLimit, lazyLoadMembers: true });
    await waitFor(
        client,
        sdk.ClientEvent.Sync,
        () => client.getSyncState() === sdk.SyncState.Syncing,
        `${login.user_id} to reach the SYNCING state`,
    );
    return client;
}

function liveMessages(room) {
    return room
        .getLiveTimeline()
        .getEvents()
        .filter((e) => e.getType() === sdk.EventType.RoomMessage);
}

async function main() {
    const suffix = Math.random().toString(36).slice(2, 8);
    const password = `pw-${Math.random().toString(36).slice(2)}`;

    begin("register alice and bob");
    const aliceId = await register(`alice_${suffix}`, password);
    const bobId = await register(`bob_${suffix}`, password);

    begin("log in and start syncing");
    const alice = await logIn(`alice_${suffix}`, password, 10);
    const bob = await logIn(`bob_${suffix}`, password, 10);
    equal(alice.getUserId(), aliceId, "alice's client knows her user id");

    begin("alice creates a room");
    const { room_id: roomId } = await alice.createRoom({
        name: "js-sdk check",
        topic: "thirty messages",
        preset: sdk.Preset.PrivateChat,
    });
    const aliceRoom = await waitFor(
        alice,
        sdk.ClientEvent.Room,
        () => alice.getRoom(roomId),
        "alice's room in her sync",
    );
    await waitFor(
        alice,
        sdk.ClientEvent.Sync,
        () => aliceRoom.getMyMembership() === sdk.KnownMembership.Join && aliceRoom.name === "js-sdk check",
        "alice joined to a room named 'js-sdk check'",
    );

    begin("alice invites bob; bob sees the invite");
    await alice.invite(roomId, bobId);
    const invited = await waitFor(
        bob,
        sdk.ClientEvent.Sync,
        () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite && bob.getRoom(roomId),
        "the invite in bob's sync",
    );
    equal(invited.getMember(bobId)?.events.member?.getSender(), aliceId, "the invite comes from alice");
    equal(invited.name, "js-sdk check", "the invite's stripped state names the room");

    begin("bob joins");
    await bob.joinRoom(roomId);
    const bobRoom = bob.getRoom(roomId);
    await waitFor(
        bob,
        sdk.ClientEvent.Sync,
        () => bobRoom.getMyMembership() === sdk.KnownMembership.Join,
        "bob's join in his sync",
    );
    await waitFor(
        alice,
        sdk.ClientEvent.Sync,
        () => aliceRoom.getMember(bobId)?.membership === sdk.KnownMembership.Join,
        "bob's join in alice's sync",
    );

    begin(`alice sends ${MESSAGES} messages; bob sees them in order`);
    const sent = [];
    for (let i = 0; i < MESSAGES; i++) {
        const { event_id: eventId } = await alice.sendTextMessage(roomId, `message ${i}`);
        sent.push(eventId);
    }
    await waitFor(
        bob,
        sdk.ClientEvent.Sync,
        () => liveMessages(bobRoom).some((e) => e.getId() === sent[MESSAGES - 1]),
        `the last message in bob's live timeline`,
    );
    // Whatever a limited sync left out, bob's client fetches by paging back, as a client does.
    while (!liveMessages(bobRoom).some((e) => e.getId() === sent[0])) {
        check(await bob.paginateEventTimeline(bobRoom.getLiveTimeline(), { backwards: true, limit: 10 }),
            "bob's timeline can be paged back to the first message");
    }
    const bobMessages = liveMessages(bobRoom);
    equal(bobMessages.map((e) => e.getId()), sent, "bob sees alice's messages in the order she sent them");
    equal(
        bobMessages.map((e) => e.getContent().body),
        sent.map((_, i) => `message ${i}`),
        "bob sees the bodies alice sent",
    );

    begin("alice redacts message 4; bob sees it redacted");
    const target = sent[4];
    const { event_id: redactionId } = await alice.redactEvent(roomId, target, undefined, { reason: "typo" });
    await waitFor(
        bob,
        sdk.ClientEvent.Sync,
        () => bobRoom.findEventById(target)?.isRedacted(),
        "the redaction in bob's sync",
    );
    const fetched = await bob.fetchRoomEvent(roomId, target);
    equal(fetched.content, {}, "GET /event of the redacted message has empty content");
    equal(fetched.unsigned?.redacted_because?.event_id, redactionId, "and names its redaction");

    begin("a new device of bob's pages back through the room from a short initial sync");
    const bob2 = await logIn(`bob_${suffix}`, password, 3);
    const room2 = await waitFor(bob2, sdk.ClientEvent.Sync, () => bob2.getRoom(roomId), "the room on bob's new device");
    for (let pages = 0; room2.getLiveTimeline().getPaginationToken(sdk.EventTimeline.BACKWARDS); pages++) {
        check(pages < 20, "back-pagination reaches the start of the room in 20 pages");
        await bob2.scrollback(room2, 10);
    }
    const all = room2.getLiveTimeline().getEvents();
    equal(all[0].getType(), sdk.EventType.RoomCreate, "the room's history begins with m.room.create");
    const messages2 = all.filter((e) => e.getType() === sdk.EventType.RoomMessage);
    equal(messages2.map((e) => e.getId()), sent, "paged-back history holds the messages in order");
    check(messages2[4].isRedacted(), "the redacted message is redacted in paged-back history");
    equal(messages2[5].getContent().body, "message 5", "its neighbour keeps its body");

    begin("bob's new device lists his rooms and loads the members (lazy loading is on)");
    equal((await bob2.getJoinedRooms()).joined_rooms, [roomId], "GET /joined_rooms");
    await room2.loadMembersIfNeeded();
    equal(
        room2.getJoinedMembers().map((m) => m.userId).sort(),
        [aliceId, bobId].sort(),
        "GET /members gives alice and bob as the joined members",
    );

    begin("raw /messages backwards returns newest first");
    // The newest event is the redaction; the 30 messages come right before it.
    const page = await bob2.createMessagesRequest(roomId, null, MESSAGES + 1, sdk.Direction.Backward);
    equal(page.chunk[0].event_id, redactionId, "/messages from the end starts with the newest event");
    const pageMessages = page.chunk.filter((e) => e.type === sdk.EventType.RoomMessage);
    equal(pageMessages.map((e) => e.event_id), sent.slice().reverse(), "/messages dir=b lists newest first");
    equal(pageMessages[MESSAGES - 1 - 4].content, {}, "/messages returns the redacted message without content");

    begin("bob leaves; alice sees the leave");
    await bob.leave(roomId);
    await waitFor(
        alice,
        sdk.ClientEvent.Sync,
        () => aliceRoom.getMember(bobId)?.membership === sdk.KnownMembership.Leave,
        "bob's leave in alice's sync",
    );
    await waitFor(
        bob,
        sdk.ClientEvent.Sync,
        () => bobRoom.getMyMembership() === sdk.KnownMembership.Leave,
        "bob's own leave in his sync",
    );
}

const overall = setTimeout(() => {
    console.error(`FAILED at step "${step}": the whole check took over ${TOTAL_TIMEOUT_MS} ms`);
    report();
    process.exit(1);
}, TOTAL_TIMEOUT_MS);

function report() {
    if (failedRequests.length) {
        console.log(`requests answered with an error status:\n  ${failedRequests.join("\n  ")}`);
    }
}

try {
    await main();
    console.log("OK");
    report();
} catch (e) {
    console.error(`FAILED at step "${step}": ${e?.stack ?? e}`);
    if (e instanceof sdk.MatrixError) console.error(`  ${e.httpStatus} ${e.errcode}`);
    report();
    process.exitCode = 1;
} finally {
    clearTimeout(overall);
    for (const client of started) client.stopClient();
}
// Pending long-polls would keep the process alive for their timeout; the outcome is known.
process.exit(process.exitCode ?? 0);
