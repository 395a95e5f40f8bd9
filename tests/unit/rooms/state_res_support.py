"""Test support for state resolution: an event builder and a small auth checker.

The checker implements the subset of the room version 10-12 authorisation
rules that the state resolution tests exercise (create, membership, join
rules, power levels, ordinary state). It lives in the tests only: the server
uses ``homeserver.rooms.auth.check_auth``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.state_res.common import StateKey
from homeserver.rooms.state_res.iterative_auth_check import AuthStateView

CREATE = "m.room.create"
MEMBER = "m.room.member"
PL = "m.room.power_levels"
JR = "m.room.join_rules"
TOPIC = "m.room.topic"
PL_KEY: StateKey = (PL, "")
JR_KEY: StateKey = (JR, "")
CREATE_KEY: StateKey = (CREATE, "")
TOPIC_KEY: StateKey = (TOPIC, "")


def member_key(user: str) -> StateKey:
    return (MEMBER, user)


class Rejected(Exception):
    """The test checker's AuthError."""


# --- a small, real auth checker ---------------------------------------------


def _creators(create: Event) -> set[str]:
    version = create.room_version
    if not version.implicit_room_creator:
        return {str(create.content.get("creator", ""))}
    creators = {create.sender}
    if version.privileged_creators:
        creators.update(create.content.get("additional_creators", []))
    return creators


def _power(user: str, state: Mapping[StateKey, Event], create: Event) -> float:
    creators = _creators(create)
    if create.room_version.privileged_creators and user in creators:
        return math.inf
    pl = state.get(PL_KEY)
    if pl is None:
        return 100 if user in creators else 0
    users = pl.content.get("users", {})
    return int(users.get(user, pl.content.get("users_default", 0)))


def _level(state: Mapping[StateKey, Event], name: str, default: int) -> int:
    pl = state.get(PL_KEY)
    if pl is None:
        # Without a power levels event only ban, kick and redact keep 50.
        return default if name in ("ban", "kick", "redact") else 0
    return int(pl.content.get(name, default))


def _membership(state: Mapping[StateKey, Event], user: str) -> str:
    member = state.get(member_key(user))
    return (member.membership or "leave") if member is not None else "leave"


def check_auth(event: Event, state: Mapping[StateKey, Event]) -> None:
    """Raise ``Rejected`` unless ``event`` is allowed against ``state``."""
    if event.type == CREATE:
        if event.prev_event_ids:
            raise Rejected("create with prev_events")
        return
    create = state.get(CREATE_KEY)
    if create is None:
        raise Rejected("no create event")
    if event.type == MEMBER:
        _check_member(event, state, create)
        return
    sender_power = _power(event.sender, state, create)
    if _membership(state, event.sender) != "join":
        raise Rejected("sender not joined")
    default = _level(state, "state_default", 50)
    required = _required_level(state, event.type, default)
    if required > sender_power:
        raise Rejected("insufficient power")
    if event.state_key is not None and event.state_key.startswith("@"):
        if event.state_key != event.sender:
            raise Rejected("state key names another user")
    if event.type == PL:
        _check_power_levels(event, state, sender_power, create)


def _required_level(state: Mapping[StateKey, Event], event_type: str, default: int) -> int:
    pl = state.get(PL_KEY)
    if pl is None:
        return default
    return int(pl.content.get("events", {}).get(event_type, default))


def power_levels(version: RoomVersion, users: dict[str, int]) -> dict[str, Any]:
    """Power levels content with alice at 100, unless she is a v12 creator."""
    if not version.privileged_creators:
        users = {"@alice:test": 100, **users}
    return {"users": users}


def _check_member(event: Event, state: Mapping[StateKey, Event], create: Event) -> None:
    target = event.state_key or ""
    membership = event.membership
    sender_state = _membership(state, event.sender)
    target_state = _membership(state, target)
    if membership == "join":
        creators = _creators(create)
        if event.prev_event_ids == [create.event_id] and target in creators:
            return
        if event.sender != target:
            raise Rejected("join for someone else")
        if target_state == "ban":
            raise Rejected("banned")
        join_rule = state[JR_KEY].content.get("join_rule") if JR_KEY in state else "invite"
        if join_rule == "public":
            return
        if join_rule in ("invite", "knock") and target_state in ("invite", "join"):
            return
        raise Rejected("join not allowed")
    sender_power = _power(event.sender, state, create)
    target_power = _power(target, state, create)
    if membership == "invite":
        if sender_state != "join" or target_state in ("join", "ban"):
            raise Rejected("invite not allowed")
        if sender_power < _level(state, "invite", 0):
            raise Rejected("invite level")
        return
    if membership == "leave":
        if event.sender == target:
            if sender_state in ("join", "invite", "knock"):
                return
            raise Rejected("not in room")
        if sender_state != "join":
            raise Rejected("sender not joined")
        if target_state == "ban" and sender_power < _level(state, "ban", 50):
            raise Rejected("unban level")
        if sender_power >= _level(state, "kick", 50) and target_power < sender_power:
            return
        raise Rejected("kick not allowed")
    if membership == "ban":
        if sender_state != "join":
            raise Rejected("sender not joined")
        if sender_power >= _level(state, "ban", 50) and target_power < sender_power:
            return
        raise Rejected("ban not allowed")
    raise Rejected("unknown membership")


def _check_power_levels(
    event: Event, state: Mapping[StateKey, Event], sender_power: float, create: Event
) -> None:
    if create.room_version.privileged_creators and set(event.content.get("users", {})) & (
        _creators(create)
    ):
        raise Rejected("creators in users")
    old = state.get(PL_KEY)
    if old is None:
        return
    for name in ("users_default", "events_default", "state_default", "ban", "kick", "invite"):
        before, after = old.content.get(name), event.content.get(name)
        if before != after:
            for value in (before, after):
                if value is not None and int(value) > sender_power:
                    raise Rejected(f"cannot change {name}")
    old_users: dict[str, Any] = old.content.get("users", {})
    new_users: dict[str, Any] = event.content.get("users", {})
    for user in set(old_users) | set(new_users):
        before, after = old_users.get(user), new_users.get(user)
        if before == after:
            continue
        if before is not None and user != event.sender and int(before) >= sender_power:
            raise Rejected("cannot change a peer's level")
        if after is not None and int(after) > sender_power:
            raise Rejected("cannot grant above own level")


# --- building rooms ----------------------------------------------------------


class RoomBuilder:
    """Builds events with auth events selected from a given branch state.

    Event ids are ``$`` + a readable name; timestamps increase by one per
    event unless given.
    """

    def __init__(self, version: RoomVersion) -> None:
        self.version = version
        self.events: dict[str, Event] = {}
        self.room_id = "!CREATE" if version.room_id_from_create_event else "!room:test"
        self._ts = 0

    def event(
        self,
        name: str,
        state: Mapping[StateKey, str],
        event_type: str,
        sender: str,
        state_key: str | None = "",
        content: dict[str, Any] | None = None,
        *,
        ts: int | None = None,
        prev: list[str] | None = None,
    ) -> Event:
        self._ts += 1
        event_id = "$" + name
        content = content or {}
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "origin_server_ts": self._ts if ts is None else ts,
            "auth_events": self._select_auth(state, event_type, sender, state_key, content),
            "prev_events": prev if prev is not None else [],
            "depth": self._ts,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        if not (event_type == CREATE and self.version.room_id_from_create_event):
            pdu["room_id"] = self.room_id
        event = Event(event_id, pdu, self.version)
        self.events[event_id] = event
        return event

    def _select_auth(
        self,
        state: Mapping[StateKey, str],
        event_type: str,
        sender: str,
        state_key: str | None,
        content: dict[str, Any],
    ) -> list[str]:
        """Spec "Auth events selection"."""
        if event_type == CREATE:
            return []
        keys: list[StateKey] = [PL_KEY, member_key(sender)]
        if not self.version.room_id_from_create_event:
            keys.insert(0, CREATE_KEY)
        if event_type == MEMBER and state_key is not None:
            keys.append(member_key(state_key))
            if content.get("membership") in ("join", "invite", "knock"):
                keys.append(JR_KEY)
        selected: list[str] = []
        for key in keys:
            event_id = state.get(key)
            if event_id is not None and event_id not in selected:
                selected.append(event_id)
        return selected

    def apply(
        self,
        name: str,
        state: dict[StateKey, str],
        event_type: str,
        sender: str,
        state_key: str = "",
        content: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[StateKey, str]:
        """Build a state event from ``state``, check it, return the state after it.

        The event must pass the checker both against its auth events (the
        check on receipt) and against ``state`` (the current state check).
        """
        event = self.event(name, state, event_type, sender, state_key, content, **kwargs)
        check_auth(event, self.auth_events_of(event))
        check_auth(event, AuthStateView(state, self.events, self.auth_events_of(event)))
        return {**state, (event_type, state_key): event.event_id}

    def auth_events_of(self, event: Event) -> dict[StateKey, Event]:
        """The event's auth events by key, plus the create event in room version 12."""
        auth = {self.events[a].state_tuple(): self.events[a] for a in event.auth_event_ids}
        if self.version.room_id_from_create_event and "$CREATE" in self.events:
            auth.setdefault(CREATE_KEY, self.events["$CREATE"])
        return auth

    def base_room(
        self, members: tuple[str, ...] = ("@bob:test", "@charlie:test")
    ) -> dict[StateKey, str]:
        """Alice creates a public room (PL: alice 100) and ``members`` join."""
        alice = "@alice:test"
        create_content: dict[str, Any] = {"room_version": self.version.identifier}
        if not self.version.implicit_room_creator:
            create_content["creator"] = alice
        state = self.apply("CREATE", {}, CREATE, alice, "", create_content)
        state = self.apply(
            "IMA", state, MEMBER, alice, alice, {"membership": "join"}, prev=["$CREATE"]
        )
        state = self.apply("IPOWER", state, PL, alice, "", power_levels(self.version, {}))
        state = self.apply("IJR", state, JR, alice, "", {"join_rule": "public"})
        for index, user in enumerate(members):
            state = self.apply(f"IM{index}", state, MEMBER, user, user, {"membership": "join"})
        return state
