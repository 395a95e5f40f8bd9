"""While a room's state is partial, a membership the auth rules read but the state
lacks comes from the event's own auth events (``federation.pdu.pipeline``); one the
state holds is never replaced, and a rejected auth event never stands in."""

from __future__ import annotations

from federation.pdu.pipeline import _partial_memberships
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.store.events_store import StoredEvent

V12 = KNOWN_ROOM_VERSIONS["12"]
MEMBER = "m.room.member"


def _member(event_id: str, user: str, membership: str) -> Event:
    pdu = {"type": MEMBER, "state_key": user, "sender": user, "content": {"membership": membership}}
    return Event(event_id, pdu, V12)


def _stored(event: Event, rejected: str | None = None) -> StoredEvent:
    return StoredEvent(event, 1, 1, None, None, True, rejected, False, None)


def test_missing_membership_comes_from_the_auth_events() -> None:
    carol = _member("$carol", "@carol:a", "join")
    keys = [(MEMBER, "@carol:a"), ("m.room.power_levels", "")]
    before, current = _partial_memberships(keys, {}, {}, [_stored(carol)], backfilled=False)
    assert before == {(MEMBER, "@carol:a"): carol}
    assert current == {(MEMBER, "@carol:a"): carol}


def test_a_membership_the_state_holds_is_kept() -> None:
    cited = _member("$old", "@carol:a", "join")
    held = _member("$ban", "@carol:a", "ban")
    key = (MEMBER, "@carol:a")
    before, current = _partial_memberships(
        [key], {key: held}, {key: held}, [_stored(cited)], backfilled=False
    )
    assert before[key] is held and current[key] is held


def test_a_rejected_auth_event_never_stands_in() -> None:
    carol = _member("$carol", "@carol:a", "join")
    key = (MEMBER, "@carol:a")
    before, current = _partial_memberships([key], {}, {}, [_stored(carol, "bad")], False)
    assert before == {} and current == {}


def test_backfilled_keeps_one_map_for_both() -> None:
    """History is never soft-failed: the pipeline passes the same map twice."""
    carol = _member("$carol", "@carol:a", "join")
    key = (MEMBER, "@carol:a")
    state: dict[tuple[str, str], Event] = {}
    before, current = _partial_memberships([key], state, state, [_stored(carol)], True)
    assert current is before and before[key] is carol
