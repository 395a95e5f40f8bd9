"""Our users' side of the membership handshakes with a resident server:
joining (make_join + send_join v2, then the returned state and auth chain
verified and stored as the room's state), knocking, leaving a room we are
not in (rejecting an invite, retracting a knock), and having an invite
countersigned by the invitee's server.

Servers from before the v2 endpoints get the deprecated v1 ``send_join``,
``send_leave`` and ``invite`` (tried when v2 answers 404 M_UNRECOGNIZED). When
no server in the room takes the leave of an invite or knock (refused, failing,
unreachable), the user's leave is kept here alone, so they are not stuck with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from federation.client import FederationClient, encode_path
from federation.errors import FederationError
from federation.membership.partial_state import PartialStateJoins
from federation.membership.resident import ResidentMembership
from federation.outbound import OutboundRooms
from federation.pdu.fetch import TooManyEvents
from federation.pdu.graph import diff
from federation.pdu.pipeline import PduPipeline
from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.events.builder import build_event
from homeserver.events.keys import SigningKey
from homeserver.events.model import Event
from homeserver.events.redaction import redact
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import compute_event_id, reference_hash_entry
from homeserver.rooms.auth.constants import CREATE, MEMBER
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.checks import EventRejected, check_event
from homeserver.rooms.persist import NewRoom, PersistPlan
from homeserver.rooms.serialize import STRIPPED_STATE_KEYS
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.storage.database import Queries

log = logging.getLogger("myelin.federation.membership")

SUPPORTED_VERSIONS = sorted(KNOWN_ROOM_VERSIONS)
# A big room's whole state and auth chain (the state is never cut; past this the
# join fails with an error saying so).
SEND_JOIN_MAX_BYTES = 256 * 1024 * 1024
# servers_in_room kept from a send_join answer (a room's distinct servers).
MAX_SERVERS_IN_ROOM = 10_000
_TEMPLATE_FIELDS = ("type", "room_id", "sender", "state_key", "prev_events", "auth_events", "depth")


def _fed(*segments: str) -> str:
    return encode_path("_matrix", "federation", *segments)


def _unreachable(e: FederationError) -> MatrixError:
    """The client's error when no server could help: the last remote's refusal as it
    gave it (a 4xx Matrix error such as M_INCOMPATIBLE_ROOM_VERSION), else 502."""
    if e.status == 403 or e.errcode == "M_FORBIDDEN":
        return forbidden(e.error)
    if e.status == 404:
        return not_found(e.error)
    if e.status is not None and 400 <= e.status < 500 and e.errcode and e.errcode != "M_UNKNOWN":
        extra: dict[str, Any] = {}
        version = e.body.get("room_version") if isinstance(e.body, dict) else None
        if e.errcode == "M_INCOMPATIBLE_ROOM_VERSION" and isinstance(version, str):
            extra["room_version"] = version  # the spec's field for this error
        return MatrixError(e.status, e.errcode, e.error, **extra)
    return MatrixError(502, "M_UNKNOWN", "No server in the room could help")


def _v2_unknown(e: FederationError) -> bool:
    """The remote does not have the v2 endpoint (a server from before it): v1 is tried
    (the spec keeps the v1 send_join, send_leave and invite, deprecated)."""
    if e.status == 404 and e.errcode in (None, "M_UNRECOGNIZED"):
        return True
    return e.status in (400, 405) and e.errcode == "M_UNRECOGNIZED"


def _v1_body(resp: Any) -> Any:
    """A v1 answer is ``[200, body]`` (spec: deprecated v1 send_join/send_leave/invite)."""
    if isinstance(resp, list) and len(resp) == 2 and resp[0] == 200:
        return resp[1]
    return resp


def _servers_if_omitted(resp: Any) -> list[str] | None:
    """The resident's servers_in_room when it did omit the members (it may not: a
    server without partial-state joins answers in full, and the join is a full one)."""
    if not isinstance(resp, dict) or resp.get("members_omitted") is not True:
        return None
    servers = resp.get("servers_in_room")
    if not isinstance(servers, list):
        servers = []  # required with members_omitted; the server joined through still is one
    return [s for s in servers if isinstance(s, str)][:MAX_SERVERS_IN_ROOM]


def _not_among(pdus: Any, known: set[str], rv: RoomVersion) -> Any:
    """The PDUs whose event id is not in ``known`` (unnameable ones are kept: their
    checks drop them)."""
    if not isinstance(pdus, list):
        return pdus
    out = []
    for pdu in pdus:
        try:
            if isinstance(pdu, dict) and compute_event_id(pdu, rv) in known:
                continue
        except (TypeError, ValueError, KeyError):
            pass
        out.append(pdu)
    return out


class RemoteMembership:
    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        clock: Clock,
        client: FederationClient,
        rooms: RoomService,
        pipeline: PduPipeline,
        resident: ResidentMembership,
        outbound: OutboundRooms,
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.clock = clock
        self.client = client
        self.rooms = rooms
        self.pipeline = pipeline
        self.resident = resident
        self.outbound = outbound
        self._prefetches: set[asyncio.Task[None]] = set()
        # Partial-state joins (config federation.partial_state_joins), set by FederatedRooms.
        self.partial: PartialStateJoins | None = None
        self.partial_enabled = False

    # ----------------------------------------------------------- directory

    async def resolve(
        self, room_id_or_alias: str, servers: Sequence[str], user_id: str
    ) -> tuple[str, list[str]]:
        """(room id, candidate servers): ``/query/directory`` for a remote alias; the
        servers given, the alias's, the room id's, and those of a pending invite."""
        candidates = list(servers)
        if room_id_or_alias.startswith("#"):
            try:
                resp = await self.client.get_json(
                    domain_of(room_id_or_alias),
                    _fed("v1", "query", "directory"),
                    {"room_alias": room_id_or_alias},
                )
            except FederationError as e:
                err = not_found("Room alias not found") if e.status == 404 else _unreachable(e)
                raise err from None
            room_id = resp.get("room_id") if isinstance(resp, dict) else None
            if not isinstance(room_id, str):
                raise not_found("Room alias not found")
            given = resp.get("servers")
            candidates += (
                [s for s in given if isinstance(s, str)] if isinstance(given, list) else []
            )
            room_id_or_alias = room_id
        if ":" in room_id_or_alias:
            candidates.append(domain_of(room_id_or_alias))
        known = await self.rooms.rooms.get_room(room_id_or_alias)
        candidates += await self._servers_from_membership(user_id, known)
        out = [s for s in dict.fromkeys(candidates) if s and s != self.server_name]
        if not out:
            raise not_found("No server to join the room through")
        return room_id_or_alias, out

    # ------------------------------------------------------------- helpers

    async def _make(
        self, server: str, kind: str, room_id: str, user_id: str, versioned: bool
    ) -> tuple[Event, RoomVersion]:
        """make_join/make_leave/make_knock, then our own event built from the template."""
        query = {"ver": SUPPORTED_VERSIONS} if versioned else None
        resp = await self.client.get_json(
            server, _fed("v1", f"make_{kind}", room_id, user_id), query
        )
        template = resp.get("event") if isinstance(resp, dict) else None
        # No room_version: the room is version 1 or 2, which share a format (make_join).
        version = resp.get("room_version", "1") if isinstance(resp, dict) else None
        rv = KNOWN_ROOM_VERSIONS.get(version) if isinstance(version, str) else None
        if not isinstance(template, dict) or rv is None:
            raise FederationError(server, "unusable template", status=502)
        content = template.get("content")
        expected = (MEMBER, room_id, user_id, user_id, kind)
        got = (
            template.get("type"),
            template.get("room_id"),
            template.get("sender"),
            template.get("state_key"),
            content.get("membership") if isinstance(content, dict) else None,
        )
        if got != expected:
            raise FederationError(server, "template does not match the request", status=502)
        try:
            return self._template_event(template, rv), rv
        except ValueError as e:  # e.g. plain ids where a v1/v2 room needs [id, hash] pairs
            raise FederationError(server, f"unusable template: {e}", status=502) from None

    def _template_event(self, template: dict[str, Any], rv: RoomVersion) -> Event:
        """Our event from a template; ``ValueError`` when it is not of ``rv``'s format."""
        fields = {k: template[k] for k in _TEMPLATE_FIELDS if k in template}
        fields["content"] = dict(template["content"])
        fields["origin_server_ts"] = self.clock.now_ms()
        # The resident's references as it wrote them (v1/v2: [id, hash] pairs; a
        # server that sent no room_version may cite plain ids, as Synapse then
        # sends back too): the send_join answer is judged as ever.
        return build_event(
            rv,
            fields,
            self.server_name,
            self.signing_key,
            event_id=self.rooms.new_event_id(rv),
            references_as_given=True,
        )

    def _with_content(self, event: Event, content: dict[str, Any]) -> Event:
        template = dict(event.pdu)
        template["content"] = {**event.content, **content}
        try:
            return self._template_event(template, event.room_version)
        except ValueError as e:
            raise bad_json(f"Invalid membership content: {e}") from None

    # ---------------------------------------------------------------- join

    async def join(
        self, user_id: str, room_id_or_alias: str, servers: Sequence[str], content: dict[str, Any]
    ) -> str:
        room_id, candidates = await self.resolve(room_id_or_alias, servers, user_id)
        last: FederationError | None = None
        for server in candidates:
            # The resident's keys, for its answer's signatures, fetched meanwhile.
            # Never cancelled (a fetch cut short would hold the keyring's rate limit
            # without the keys): kept referenced until it ends.
            keys = asyncio.create_task(self.pipeline.fetcher.keyring.prefetch(server))
            self._prefetches.add(keys)
            keys.add_done_callback(self._prefetches.discard)
            try:
                event, rv = await self._make(server, "join", room_id, user_id, versioned=True)
                event = self._with_content(event, content)
                partial = await self._may_join_partially(room_id)
                resp = await self._put_v2_or_v1(
                    server,
                    ("send_join", room_id, event.event_id),
                    event.pdu,
                    event.pdu,
                    SEND_JOIN_MAX_BYTES,
                    query={"omit_members": "true"} if partial else None,
                )
            except FederationError as e:
                log.info("join through %s failed: %s", server, e.error)
                last = e
                continue
            with contextlib.suppress(Exception):
                await keys  # a failure is the key lookup's to report, if it matters
            omitted = _servers_if_omitted(resp) if partial else None
            await self._complete_join(server, room_id, rv, event, resp, omitted)
            return room_id
        raise _unreachable(last) if last else not_found("No server to join through")

    async def _put_v2_or_v1(
        self,
        server: str,
        path: tuple[str, ...],
        body_v2: Any,
        body_v1: Any,
        max_response_bytes: int | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """PUT to the v2 endpoint; to the deprecated v1 one if the remote lacks v2
        (``query`` is v2's only: v1 send_join has no ``omit_members``)."""
        try:
            return await self.client.put_json(
                server, _fed("v2", *path), body_v2, query, max_response_bytes=max_response_bytes
            )
        except FederationError as e:
            if not _v2_unknown(e):
                raise
        resp = await self.client.put_json(
            server, _fed("v1", *path), body_v1, max_response_bytes=max_response_bytes
        )
        return _v1_body(resp)

    async def _may_join_partially(self, room_id: str) -> bool:
        """Ask for a partial state (``omit_members``) when enabled. A join goes through
        another server only when none of our users is joined, so this server is not in
        the room: a first join, or a rejoin of a room we left (the spec's omit_members
        does not tell them apart, and Synapse asks for both). A rejoin's partial state
        replaces the current state of our earlier membership (its member keys go with
        the diff; ``_complete_join``) and the resync's merge adds the members to the
        state groups made since the join only (``min_state_group``)."""
        return self.partial is not None and self.partial_enabled

    async def _complete_join(
        self,
        server: str,
        room_id: str,
        rv: RoomVersion,
        event: Event,
        resp: Any,
        partial_servers: list[str] | None = None,
    ) -> None:
        """Verify the returned state and auth chain, store them, persist our join.

        ``partial_servers``: the resident omitted the members (its servers_in_room):
        the room is marked partial in the join's own transaction and its whole state
        is fetched in the background (``federation.membership.partial_state``)."""
        if not isinstance(resp, dict):
            raise MatrixError(502, "M_UNKNOWN", "Bad send_join answer")
        signed = resp.get("event")
        if isinstance(signed, dict):
            got = await self.pipeline.fetcher.checked(signed, rv)
            if got is not None and got[0].event_id == event.event_id:
                event = got[0]
        fetcher = self.pipeline.fetcher
        given_state = resp.get("state")
        try:
            # The whole state, never a prefix of it (issue 9): a cut state
            # loses members, and join rules or invites past the cut.
            state = await fetcher.whole(given_state, rv, room_id, "the room's state")
            # Most of the chain is the state again: each event is checked once.
            chain_pdus = _not_among(resp.get("auth_chain"), {e.event_id for e in state}, rv)
            chain = await fetcher.whole(chain_pdus, rv, room_id, "the auth chain")
        except TooManyEvents as e:
            log.warning("join of %s through %s refused: %s", room_id, server, e)
            raise MatrixError(502, "M_UNKNOWN", f"Cannot join: {e}") from None
        if isinstance(given_state, list) and len(state) < len(given_state):
            log.warning(
                "send_join from %s: %d of %d state events failed their checks and were dropped",
                server,
                len(given_state) - len(state),
                len(given_state),
            )
        # A room's state always holds its create event: an answer without it is broken.
        create = next((e for e in state if e.type == CREATE), None)
        if create is None or create.room_id != room_id:
            raise MatrixError(502, "M_UNKNOWN", "The room's state has no create event")
        async with self.rooms.lock(room_id):
            known = await self.rooms.rooms.get_room(room_id)
            # A first join: the room's row goes with its state and chain (one commit).
            where = known or NewRoom(room_id, create.sender)
            await self.pipeline.auth.store_outliers_locked(where, [*chain, *state])
            room = known or await self.rooms.rooms.get_room(room_id)
            stored_state = await self.rooms.events.by_ids(e.event_id for e in state)
            made = stored_state.get(create.event_id)
            if room is None or made is None or made.rejected_reason is not None:
                raise MatrixError(502, "M_UNKNOWN", "The room's create event is not usable")
            ids = {
                s.event.state_tuple(): i
                for i, s in stored_state.items()
                if s.rejected_reason is None and s.event.is_state()
            }
            state_map = {k: stored_state[i].event for k, i in ids.items()}
            auth = await self.rooms.events.by_ids(event.auth_event_ids)
            if partial_servers is not None:
                # Memberships the join's auth rules read (ours: an invite) were omitted
                # with the others; the join's own auth events stand in for them.
                for a in auth.values():
                    if a.event.type == MEMBER and a.rejected_reason is None:
                        state_map.setdefault(a.event.state_tuple(), a.event)
                        ids.setdefault(a.event.state_tuple(), a.event.event_id)
                        stored_state.setdefault(a.event.event_id, a)
            try:
                await check_event(
                    event,
                    auth_events=[s.event for s in auth.values()],
                    state_before=state_map,
                    current_state=state_map,
                    create_event=create,
                    keys=self.pipeline.auth.keys,
                )
            except EventRejected as e:
                raise forbidden(f"The join does not pass the room's rules: {e.reason}") from None
            graph = self.pipeline.graph
            nids = await graph.to_nids(ids)
            current = await self.rooms.state.current_state(room.room_nid)
            old_ext = await self.rooms.events.extremities(room.room_nid)
            members = [
                (s.event.state_key or "", s.event.membership or "leave", s.event_nid)
                for s in stored_state.values()
                if s.event.type == MEMBER and s.event.state_key != event.state_key
            ]
            own = ids.get(event.state_tuple())
            replaced = stored_state.get(own) if own else None
            plan = PersistPlan(
                event=event,
                prev_nids=[s.event_nid for s in old_ext],
                state_group_before=None,
                replaces_nid=None if replaced is None else replaced.event_nid,
                state_delta_before=dict(nids) or None,
                current_delta=diff(nids, current),
                member_changes=members,
            )
            self.outbound.handshaken.add(event.event_id)
            partial = self.partial if partial_servers is not None else None
            if partial is None:
                stored = await self.rooms.persister.persist(plan, room.room_nid)
            else:
                # The marker in the join's own transaction: both or neither.
                servers = [server, *(partial_servers or [])]
                now, until = self.clock.now_ms(), partial.mark_claim_until()

                async def mark(q: Queries, room_nid: int) -> None:
                    await partial.store.mark_in(
                        q, room_nid, event.event_id, server, servers, now, partial.owner, until
                    )

                partial.store.marking(room.room_nid)
                try:
                    stored = await self.rooms.persister.persist(plan, room.room_nid, also=mark)
                finally:
                    partial.store.marked(room.room_nid)
        await self.rooms.after_persist(stored, room)
        if partial_servers is not None and self.partial is not None:
            self.partial.start(room)

    # ------------------------------------------------------- knock / leave

    async def knock(
        self, user_id: str, room_id_or_alias: str, servers: Sequence[str], content: dict[str, Any]
    ) -> str:
        room_id, candidates = await self.resolve(room_id_or_alias, servers, user_id)
        last: FederationError | None = None
        for server in candidates:
            try:
                event, rv = await self._make(server, "knock", room_id, user_id, versioned=True)
                event = self._with_content(event, content)
                resp = await self.client.put_json(
                    server, _fed("v1", "send_knock", room_id, event.event_id), event.pdu
                )
            except FederationError as e:
                last = e
                continue
            given = resp.get("knock_room_state") if isinstance(resp, dict) else None
            kept = {**event.pdu, "unsigned": {"knock_room_state": given or []}}
            room = await self.rooms.rooms.get_room(room_id)
            await self.resident.store_out_of_band(Event(event.event_id, kept, rv), room)
            return room_id
        raise _unreachable(last) if last else not_found("No server to knock through")

    async def _servers_from_membership(self, user_id: str, room: RoomInfo | None) -> list[str]:
        """Servers named by the user's out-of-band invite/knock: the inviter's, and the
        senders' of the stripped state it carried."""
        if room is None:
            return []
        membership = await self.rooms.members.get(room.room_nid, user_id)
        candidates: list[str] = []
        if membership is not None:
            found = await self.rooms.events.by_nids([membership.event_nid])
            for s in found.values():
                candidates.append(domain_of(s.event.sender))
                unsigned = s.event.pdu.get("unsigned")
                for e in (unsigned or {}).get(f"{membership.membership}_room_state", []):
                    if isinstance(e, dict) and isinstance(e.get("sender"), str):
                        candidates.append(domain_of(e["sender"]))
        return candidates

    async def leave(self, user_id: str, room: RoomInfo, content: dict[str, Any]) -> None:
        """Reject a remote invite / retract a knock through a server in the room."""
        candidates = await self._servers_from_membership(user_id, room)
        if ":" in room.room_id:
            candidates.append(domain_of(room.room_id))
        servers = [c for c in dict.fromkeys(candidates) if c != self.server_name]
        if not servers:
            raise not_found("No server to leave through")
        for server in servers:
            try:
                event, _ = await self._make(server, "leave", room.room_id, user_id, False)
                event = self._with_content(event, content)
                await self._put_v2_or_v1(
                    server, ("send_leave", room.room_id, event.event_id), event.pdu, event.pdu
                )
            except FederationError as e:
                log.info("leave through %s failed: %s", server, e.error)
                continue
            await self.resident.store_out_of_band(event, room)
            return
        # No server in the room would take the leave (refused, failing, unreachable):
        # the invite or knock is still withdrawn here, by a leave of our own that only
        # this server knows (as Synapse does), so the user is not stuck with it.
        await self.resident.store_out_of_band(await self._local_leave(user_id, room, content), room)

    async def _local_leave(self, user_id: str, room: RoomInfo, content: dict[str, Any]) -> Event:
        """A leave that follows the user's out-of-band invite or knock."""
        membership = await self.rooms.members.get(room.room_nid, user_id)
        if membership is None or membership.membership not in ("invite", "knock"):
            raise not_found("No server to leave through")
        found = await self.rooms.events.by_nids([membership.event_nid])
        prior = found.get(membership.event_nid)
        if prior is None:
            raise not_found("No server to leave through")
        rv = room.version
        fields: dict[str, Any] = {
            "type": MEMBER,
            "room_id": room.room_id,
            "sender": user_id,
            "state_key": user_id,
            "content": {**content, "membership": "leave"},
            "prev_events": [prior.event.event_id],
            "auth_events": [prior.event.event_id],
            "depth": prior.event.depth + 1,
            "origin_server_ts": self.clock.now_ms(),
        }
        references = (
            {prior.event.event_id: reference_hash_entry(prior.event.pdu, rv)}
            if rv.event_id_in_pdu
            else None
        )
        try:
            return build_event(
                rv,
                fields,
                self.server_name,
                self.signing_key,
                references=references,
                event_id=self.rooms.new_event_id(rv),
            )
        except ValueError as e:
            raise bad_json(f"Invalid membership content: {e}") from None

    # --------------------------------------------------------------- invite

    async def exchange_invite(self, event: Event, room: RoomInfo) -> Event:
        """RoomService's invite_exchange: the invitee's server countersigns the invite."""
        target_server = domain_of(event.state_key or "")
        # The room's preview, with the inviter's own membership (as Synapse sends it).
        keys = [*STRIPPED_STATE_KEYS, ("m.room.member", event.sender)]
        state = await self.rooms.current_state(room, keys)
        body = {
            "room_version": room.version.identifier,
            "event": event.pdu,
            "invite_room_state": [s.event.pdu for s in state.values()],
        }
        try:
            v1_body = {**event.pdu, "unsigned": {"invite_room_state": body["invite_room_state"]}}
            resp = await self._put_v2_or_v1(
                target_server, ("invite", room.room_id, event.event_id), body, v1_body
            )
        except FederationError as e:
            raise _unreachable(e) from None
        signed = resp.get("event") if isinstance(resp, dict) else None
        if not isinstance(signed, dict):
            raise MatrixError(502, "M_UNKNOWN", "The invitee's server sent no event")
        try:
            await self.pipeline.fetcher.keyring.verify_json_for_server(
                target_server, redact(signed, room.version), 0
            )
        except Exception:
            raise forbidden("The invitee's server did not sign the invite") from None
        pdu = {k: v for k, v in signed.items() if k != "unsigned"}
        return Event(event.event_id, pdu, room.version)
