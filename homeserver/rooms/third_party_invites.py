"""Third-party invites (spec client-server "Third-party invites", server-server
"Third-party invites", identity service "Invitation storage").

Inviting an address: the identity server is asked whom it is bound to
(``/v2/lookup``); a bound address is an ordinary invite of that user. An unbound
one is stored on the identity server (``/v2/store-invite``), whose token and
public keys become the ``m.room.third_party_invite`` state event.

Redeeming it: once the address is bound, the identity server calls the
invitee's homeserver (``/3pid/onbind``) with a ``signed`` block per invite; a
client may also bring one itself (``third_party_signed`` on ``/join``). The
server of the original inviter turns it into an ``m.room.member`` invite sent
*by the inviter* (the auth rules require that sender); when that server is
another one and this server is not in the room, the block is forwarded to it
(``exchange_third_party_invite``). When the invitee's server is in the room, it
sends the invite for the remote inviter itself, as the spec allows; its signature
stands in for the sender's server's (rooms/checks.py). Before sending, the
resident server checks the signature against the keys in the invite event and
asks each matching key's ``key_validity_url`` whether it was revoked; the auth
rules themselves check the signature again, on every server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.events.identifiers import is_valid_user_id
from homeserver.events.signing import verify_third_party_signed
from homeserver.identity.bindings import check_id_server, identity_failure
from homeserver.identity.client import IdentityClient, IdentityServerError
from homeserver.rooms.auth.constants import THIRD_PARTY_INVITE
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.service import RoomService

log = logging.getLogger("myelin.rooms.third_party_invites")

# (destination server, room id, the m.room.member event's fields): federation fills it.
RemoteExchange = Callable[[str, str, dict[str, Any]], Awaitable[None]]

MAX_KEYS = 16


def _signed_block(signed: Any) -> dict[str, Any]:
    """The ``signed`` object of an invite: ``mxid``, ``token``, ``signatures``."""
    if not isinstance(signed, dict):
        raise MatrixError(400, "M_MISSING_PARAM", "'signed' must be an object")
    for key in ("mxid", "token"):
        if not isinstance(signed.get(key), str):
            raise MatrixError(400, "M_MISSING_PARAM", f"'signed.{key}' must be a string")
    if not isinstance(signed.get("signatures"), dict):
        raise MatrixError(400, "M_MISSING_PARAM", "'signed.signatures' must be an object")
    return signed


def _public_keys(answer: dict[str, Any]) -> list[dict[str, str]]:
    """The ``public_keys`` of a store-invite answer, with the old single key first."""
    keys: list[dict[str, str]] = []
    raw = answer.get("public_keys")
    if isinstance(raw, list):
        for entry in raw[:MAX_KEYS]:
            if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                item = {"public_key": entry["public_key"]}
                if isinstance(entry.get("key_validity_url"), str):
                    item["key_validity_url"] = entry["key_validity_url"]
                keys.append(item)
    single = answer.get("public_key")
    if isinstance(single, str) and not any(k["public_key"] == single for k in keys):
        keys.insert(0, {"public_key": single})
    return keys


class ThirdPartyInvites:
    def __init__(
        self, rooms: RoomService, memberships: MembershipService, identity: IdentityClient
    ) -> None:
        self.rooms = rooms
        self.memberships = memberships
        self.identity = identity
        self.server_name = rooms.server_name
        # Set by federation: hand a redeemed invite to the inviter's server.
        self.remote_exchange: RemoteExchange | None = None

    # ------------------------------------------------------------------ inviting

    async def invite(
        self,
        sender: str,
        room_id: str,
        id_server: str,
        id_access_token: str,
        medium: str,
        address: str,
    ) -> None:
        """``POST /rooms/{roomId}/invite`` with a third-party identifier."""
        check_id_server(id_server)
        room = await self.rooms.room_or_forbidden(room_id)
        if await self.memberships.is_blocked(room_id):
            raise forbidden("This room has been blocked on this server")
        # Before asking the identity server (which may mail the address): the auth
        # rules decide in the end, but a non-member gets nothing sent on their behalf.
        current = await self.rooms.members.get(room.room_nid, sender)
        if current is None or current.membership != "join":
            raise forbidden("You are not in this room")
        protection = self.memberships.invite_protection
        if protection is not None:
            protection.check_local(sender)
        try:
            mxid = await self.identity.lookup(id_server, id_access_token, medium, address)
        except IdentityServerError as e:
            raise identity_failure(e) from None
        if mxid is not None:
            if not is_valid_user_id(mxid, strict=False):
                raise MatrixError(502, "M_UNKNOWN", "The identity server named no valid user")
            await self.memberships.invite(sender, room_id, mxid, counted=True)
            return
        body = await self._store_invite_body(room_id, sender, medium, address)
        try:
            answer = await self.identity.store_invite(id_server, id_access_token, body)
        except IdentityServerError as e:
            raise identity_failure(e) from None
        token = answer.get("token")
        keys = _public_keys(answer)
        if not isinstance(token, str) or not token or not keys:
            raise MatrixError(502, "M_UNKNOWN", "The identity server's invite answer is malformed")
        display_name = answer.get("display_name")
        content: dict[str, Any] = {
            "display_name": display_name if isinstance(display_name, str) else "",
            "public_key": keys[0]["public_key"],
            "public_keys": keys,
        }
        if "key_validity_url" in keys[0]:
            content["key_validity_url"] = keys[0]["key_validity_url"]
        await self.rooms.create_and_send(room, sender, THIRD_PARTY_INVITE, content, token)

    async def _store_invite_body(
        self, room_id: str, sender: str, medium: str, address: str
    ) -> dict[str, Any]:
        """What the identity server may put in its invitation mail: the room's name,
        alias, avatar, join rule and type, and the inviter's profile."""
        room = await self.rooms.room_or_forbidden(room_id)
        wanted = [
            ("m.room.name", "name", "room_name"),
            ("m.room.canonical_alias", "alias", "room_alias"),
            ("m.room.avatar", "url", "room_avatar_url"),
            ("m.room.join_rules", "join_rule", "room_join_rules"),
            ("m.room.create", "type", "room_type"),
        ]
        state = await self.rooms.current_state(room, [(t, "") for t, _, _ in wanted])
        body: dict[str, Any] = {
            "medium": medium,
            "address": address,
            "room_id": room_id,
            "sender": sender,
        }
        for event_type, field, name in wanted:
            ev = state.get((event_type, ""))
            value = ev.event.content.get(field) if ev is not None else None
            if isinstance(value, str):
                body[name] = value
        profile = await self.memberships.profiles(sender)
        if profile.get("displayname"):
            body["sender_display_name"] = profile["displayname"]
        if profile.get("avatar_url"):
            body["sender_avatar_url"] = profile["avatar_url"]
        return body

    # ----------------------------------------------------------------- redeeming

    async def on_bind(self, body: dict[str, Any]) -> None:
        """``/3pid/onbind``: the identity server's pending invites for a new binding.
        Each is redeemed on its own; one that fails does not stop the others, and the
        last failure is the answer (as Synapse answers), so the identity server learns
        that an invite was not delivered."""
        mxid = body.get("mxid")
        if not isinstance(mxid, str) or not is_valid_user_id(mxid, strict=False):
            raise MatrixError(400, "M_MISSING_PARAM", "'mxid' must be a user id")
        if domain_of(mxid) != self.server_name:
            raise invalid_param("'mxid' is not a user of this server")
        invites = body.get("invites", [])
        if not isinstance(invites, list):
            raise invalid_param("'invites' must be a list")
        failure: MatrixError | None = None
        for invite in invites[:100]:
            if not isinstance(invite, dict):
                continue
            try:
                signed = _signed_block(invite.get("signed"))
                sender, room_id = invite.get("sender"), invite.get("room_id")
                if not isinstance(sender, str) or not isinstance(room_id, str):
                    raise MatrixError(400, "M_MISSING_PARAM", "invite lacks sender or room_id")
                if signed["mxid"] != mxid:
                    raise forbidden("the signed mxid is not the bound user")
                await self.exchange(sender, mxid, room_id, signed)
            except MatrixError as e:
                log.info("a third-party invite on bind was not redeemed: %s", e.error)
                failure = e
        if failure is not None:
            raise failure

    async def join_with_signed(self, user_id: str, room_id: str, signed_in: Any) -> None:
        """``third_party_signed`` on a join: turn it into the invite first."""
        if not isinstance(signed_in, dict):
            raise MatrixError(400, "M_BAD_JSON", "'third_party_signed' must be an object")
        sender = signed_in.get("sender")
        if not isinstance(sender, str) or not is_valid_user_id(sender, strict=False):
            raise MatrixError(400, "M_MISSING_PARAM", "'third_party_signed.sender' is required")
        signed = _signed_block(signed_in)
        if signed["mxid"] != user_id:
            raise forbidden("third_party_signed is for another user")
        if not room_id.startswith("!"):
            room_id = (await self.memberships.resolve_room(room_id)).room_id
        await self.exchange(sender, user_id, room_id, signed)

    async def exchange(
        self, sender: str, target: str, room_id: str, signed: dict[str, Any]
    ) -> None:
        """Send the invite for ``target``: here when this server is in the room (also
        for a remote inviter, as the spec lets the invited server do), else through
        the inviter's server."""
        room = await self.rooms.rooms.get_room(room_id)
        here = (
            room is not None
            and await self.memberships.is_resident(room)
            # The m.room.third_party_invite may not have reached us yet: then the
            # inviter's server, which sent it, is asked instead.
            and await self.rooms.current_state_event(room, THIRD_PARTY_INVITE, signed["token"])
            is not None
        )
        if here or domain_of(sender) == self.server_name:
            await self.send_invite(sender, target, room_id, signed)
            return
        if self.remote_exchange is None:
            raise forbidden("The inviter's server cannot be reached without federation")
        event = {
            "type": "m.room.member",
            "room_id": room_id,
            "sender": sender,
            "state_key": target,
            "content": {"membership": "invite", "third_party_invite": {"signed": signed}},
        }
        await self.remote_exchange(domain_of(sender), room_id, event)

    async def on_exchange(self, origin: str, room_id: str, event: Any) -> None:
        """``exchange_third_party_invite`` from ``origin``: send the invite it carries,
        if its sender is ours (we sign only our own users' events)."""
        if not isinstance(event, dict):
            raise MatrixError(400, "M_BAD_JSON", "The body must be an event object")
        content = event.get("content")
        sender, target = event.get("sender"), event.get("state_key")
        if (
            event.get("type") != "m.room.member"
            or event.get("room_id") != room_id
            or not isinstance(content, dict)
            or content.get("membership") != "invite"
            or not isinstance(content.get("third_party_invite"), dict)
            or not isinstance(sender, str)
            or not isinstance(target, str)
        ):
            raise MatrixError(400, "M_BAD_JSON", "Not a third-party invite membership event")
        if domain_of(sender) != self.server_name:
            raise forbidden("The inviter is not a user of this server")
        if not is_valid_user_id(target, strict=False):
            raise invalid_param("Invalid user id")
        signed = _signed_block(content["third_party_invite"].get("signed"))
        await self.send_invite(sender, target, room_id, signed)

    async def send_invite(
        self, sender: str, target: str, room_id: str, signed: dict[str, Any]
    ) -> None:
        """The invite by ``sender`` (ours) redeeming the ``m.room.third_party_invite``
        named by ``signed.token``, after the key checks the event calls for."""
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        if signed["mxid"] != target:
            raise forbidden("The signed mxid is not the invited user")
        tpi = await self.rooms.current_state_event(room, THIRD_PARTY_INVITE, signed["token"])
        if tpi is None:
            raise forbidden("No third-party invite with this token in the room")
        if tpi.event.sender != sender:
            raise forbidden("The third-party invite was sent by someone else")
        await self._check_keys(tpi.event.content, signed)
        extra = {"display_name": tpi.event.content.get("display_name"), "signed": signed}
        third_party = {k: v for k, v in extra.items() if isinstance(v, (str, dict))}
        content = await self.memberships.member_content(
            target, "invite", third_party_invite=third_party
        )
        await self.rooms.create_and_send(room, sender, "m.room.member", content, target)

    async def _check_keys(self, tpi_content: dict[str, Any], signed: dict[str, Any]) -> None:
        """Signature by a key of the invite event; that key not revoked (key_validity_url)."""
        entries: list[dict[str, Any]] = []
        if isinstance(tpi_content.get("public_key"), str):
            entries.append(
                {
                    "public_key": tpi_content["public_key"],
                    "key_validity_url": tpi_content.get("key_validity_url"),
                }
            )
        many = tpi_content.get("public_keys")
        if isinstance(many, list):
            entries.extend(e for e in many[:MAX_KEYS] if isinstance(e, dict))
        for entry in entries:
            key = entry.get("public_key")
            if not isinstance(key, str) or not verify_third_party_signed(signed, [key]):
                continue
            url = entry.get("key_validity_url")
            if not isinstance(url, str):
                return
            try:
                valid = await self.identity.key_is_valid(url, key)
            except IdentityServerError as e:
                raise forbidden(f"Could not check the invite key: {e.reason}") from None
            if valid:
                return
            raise forbidden("The identity server revoked the invite's key")
        raise forbidden("The signature matches no key of the third-party invite")
