"""Rules about the create event: rule 1 (the create event itself), v12 rule 2
(the room id names the create event) and the ``m.federate`` rule (v10/v11
rule 3, v12 rule 4)."""

from __future__ import annotations

from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.auth.errors import AuthError
from homeserver.rooms.auth.ids import domain_of, is_valid_user_id


def check_create(event: Event) -> None:
    """Rule 1: an ``m.room.create`` event. Returning means "allow"."""
    pdu = event.pdu
    rv = event.room_version
    if pdu.get("prev_events"):
        raise AuthError("create event has prev_events")
    if rv.room_id_from_create_event:
        if "room_id" in pdu:
            raise AuthError("create event has a room_id")
    else:
        room_id = pdu.get("room_id")
        if not isinstance(room_id, str) or domain_of(room_id) != domain_of(event.sender):
            raise AuthError("create event room_id domain does not match the sender's")
    content = event.content
    if "room_version" in content and content["room_version"] not in KNOWN_ROOM_VERSIONS:
        raise AuthError("create event names an unknown room version")
    if not rv.implicit_room_creator and "creator" not in content:
        raise AuthError("create event has no creator")
    if rv.privileged_creators and "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError("additional_creators is not a list of user ids")


def check_room_id_matches_create(event: Event, create: Event) -> None:
    """v12 rule 2: the room id is the create event's id with sigil ``!``.

    That the create event was accepted (not rejected) is the caller's part.
    """
    if event.pdu.get("room_id") != "!" + create.event_id[1:]:
        raise AuthError("room_id does not name the room's create event")


def check_federate(event: Event, create: Event) -> None:
    """v10/v11 rule 3, v12 rule 4: ``m.federate: false`` keeps the room on
    the create sender's server."""
    if create.content.get("m.federate") is False:
        if domain_of(event.sender) != domain_of(create.sender):
            raise AuthError("room does not federate with the sender's server")
