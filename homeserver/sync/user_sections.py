"""The per-user sections of a /sync answer: ``account_data``, ``presence``,
``to_device``, ``device_lists``, ``device_one_time_keys_count`` and
``device_unused_fallback_key_types``.

Each reads its stream between ``ctx.since`` and ``ctx.now`` (the positions
the answer's ``next_batch`` will carry), except to-device: the client's
token acknowledges (deletes) what it received, and the next token advances
only past the messages delivered in this batch, so a bounded batch never
skips a message (spec: "Send-to-Device messaging", "Server behaviour").
"""

from __future__ import annotations

from typing import Any

from homeserver.e2ee.keys import sync_counts
from homeserver.errors import MatrixError
from homeserver.rooms.store.membership_store import Membership, MembershipStore
from homeserver.sync.model import SyncContext, SyncSources
from homeserver.userdata.filtering import event_matches

TO_DEVICE_BATCH = 100
# Newly shared users whose current presence one incremental sync adds (a join into a
# big room must not turn into thousands of presence reads).
MAX_NEW_PRESENCE = 200


class UserSections:
    def __init__(self, sources: SyncSources, members: MembershipStore) -> None:
        self.src = sources
        self.members = members

    async def set_presence(self, ctx: SyncContext, current: str | None = None) -> bool:
        """``set_presence``: mark the user online/unavailable when that changes their
        state (``offline`` leaves it as it is, as the spec says). ``current``: the
        user's state as just read (with the stream heads), when they have one. True
        when the state was written."""
        state = ctx.req.set_presence
        if state == "offline" or ctx.req.is_guest or ctx.req.user_nid <= 0:
            return False
        if current == state:
            return False  # the usual case: no statement
        presence = self.src.presence
        exists, row = await presence.store.get(ctx.user_id)
        if not exists or (row is not None and row.state == state):
            return False
        status = row.status_msg if row is not None else None
        await presence.set_status(ctx.req.user_nid, ctx.user_id, state, status)
        return True

    async def account_data(
        self, ctx: SyncContext
    ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        """(global account data events, room id -> room account data events), filtered."""
        since = ctx.since.account_data if ctx.since is not None else 0
        global_data, rooms = await self.src.account_data.changes_since(
            ctx.user_id, since, ctx.now.account_data, initial=ctx.since is None
        )
        gf, rf = ctx.flt.account_data, ctx.flt.room.account_data
        events = [{"type": t, "content": c} for t, c in global_data.items()]
        per_room = {
            room_id: [
                {"type": t, "content": c}
                for t, c in data.items()
                if event_matches(rf, {"type": t, "room_id": room_id})
            ]
            for room_id, data in rooms.items()
        }
        return [e for e in events if event_matches(gf, e)], {k: v for k, v in per_room.items() if v}

    async def presence(self, ctx: SyncContext) -> list[dict[str, Any]]:
        """Presence changes of the user and of everyone sharing a room with them; in an
        incremental sync also the current presence of users who newly share a room (they
        joined one of ours, or we joined theirs), whose earlier changes were not sent."""
        since = ctx.since.presence if ctx.since is not None else 0
        events: list[dict[str, Any]] = []
        if since < ctx.now.presence:
            events = await self.src.presence.changes_for(ctx.user_id, since, ctx.now.presence)
        if ctx.since is not None:
            seen = {e["sender"] for e in events}
            for user_id in sorted(await self._newly_shared(ctx) - seen)[:MAX_NEW_PRESENCE]:
                try:
                    content = await self.src.presence.get_status(user_id)
                except MatrixError:
                    continue
                content = {**content, "presence": content.get("presence", "offline")}
                events.append({"type": "m.presence", "sender": user_id, "content": content})
        return [e for e in events if event_matches(ctx.flt.presence, e)]

    async def _newly_shared(self, ctx: SyncContext) -> set[str]:
        moves = await self.member_moves(ctx)
        users = {m.user_id for m in moves if m.membership == "join" and m.room_nid in ctx.joined}
        newly_joined = {m.room_nid for m in ctx.changed if m.membership == "join"}
        newly_joined |= ctx.completed  # a partial-state room sent whole at last
        if newly_joined:
            users |= await self.members.joined_users(sorted(newly_joined))
        users.discard(ctx.user_id)
        return users

    async def member_moves(self, ctx: SyncContext) -> list[Membership]:
        """Membership changes in (since, now] of the joined and left rooms: one read
        per sync build, shared by presence and device lists (one statement, one round
        trip on PostgreSQL, less per incremental sync)."""
        assert ctx.since is not None
        if ctx.member_moves is None:
            rooms = [*ctx.joined.keys(), *ctx.left_nids]
            ctx.member_moves = await self.members.membership_changes(
                rooms, ctx.since.events, ctx.now.events
            )
        return ctx.member_moves

    async def to_device(self, ctx: SyncContext) -> tuple[list[dict[str, Any]], int]:
        """Ack what the token proves delivered; the next batch and its end position."""
        td = self.src.to_device
        since = ctx.since.to_device if ctx.since is not None else 0
        if ctx.since is not None:
            await td.ack_to_device(ctx.user_id, ctx.req.device_id, since)
        if ctx.to_device_head is not None and ctx.to_device_head <= since:
            # No message for anyone since the token (positions become visible in
            # order, e2ee/streams.py): nothing in this device's inbox after ``since``.
            return [], since
        return await td.to_device_for(ctx.user_id, ctx.req.device_id, since, TO_DEVICE_BATCH)

    async def device_lists(self, ctx: SyncContext) -> dict[str, list[str]]:
        """``changed``: users sharing a room whose devices changed, users who newly
        share a room, and users newly invited to one of ours; ``left``: users who no
        longer share any room (spec: "Tracking the device list for a user").
        Incremental syncs only."""
        if ctx.since is None:
            return {"changed": [], "left": []}
        me = ctx.user_id
        changed = await self.src.keys.device_list_changes(
            me, ctx.since.device_lists, ctx.now.device_lists
        )
        moves = await self.member_moves(ctx)
        newly_joined = {m.room_nid for m in ctx.changed if m.membership == "join"}
        newly_joined |= ctx.completed  # a partial-state room sent whole at last
        if not (changed or moves or newly_joined or ctx.left_nids):
            # Nothing moved: skip the (join-heavy) read of who shares a room with us.
            return {"changed": [], "left": []}
        shared = await self.src.users_sharing_room_with(me)
        left: set[str] = set()
        # Users invited to one of our rooms: clients encrypt for invitees too (history
        # visible to "invited"), so they start tracking them now, as with Synapse.
        invited: set[str] = set()
        for m in moves:
            if m.user_id == me:
                continue
            if m.membership == "join" and m.room_nid in ctx.joined:
                changed.add(m.user_id)
            elif m.membership == "invite" and m.room_nid in ctx.joined:
                invited.add(m.user_id)
            elif m.membership in ("leave", "ban") and m.user_id not in shared:
                left.add(m.user_id)
        if newly_joined:
            changed |= await self.members.joined_users(sorted(newly_joined)) - {me}
        if ctx.left_nids:
            left |= await self.members.joined_users(sorted(ctx.left_nids)) - shared
        left.discard(me)
        left -= invited
        changed -= left
        changed &= shared | {me}
        changed |= invited
        return {"changed": sorted(changed), "left": sorted(left)}

    async def key_counts(self, ctx: SyncContext) -> dict[str, Any]:
        if ctx.key_counts is not None:  # read with the stream heads
            found, fallback = ctx.key_counts
            counts = sync_counts(found)
        else:
            counts, fallback = await self.src.keys.sync_key_counts(ctx.user_id, ctx.req.device_id)
        return {
            "device_one_time_keys_count": counts,
            "device_unused_fallback_key_types": fallback,
        }
