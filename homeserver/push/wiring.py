"""Builds the push rule service over account data, and the pushers over the
notification rows; called by the composition root (pushers: by sync's wiring, which
builds the notification service).

Push rules are stored apart but read by clients as the ``m.push_rules``
account data event, so the service registers itself as that event's
provider. Built here, not with the user-data services, because push
depends on account data and not the other way round.
"""

from __future__ import annotations

from homeserver.accounts.service import AccountService
from homeserver.accounts.store import AccountStore
from homeserver.accounts.threepids import ThreepidService, canonical_email
from homeserver.clock import Clock
from homeserver.config import EmailConfig
from homeserver.mail.sender import Mailer
from homeserver.push.delivery import PushDelivery
from homeserver.push.email_pushes import EmailPushes
from homeserver.push.notifications import NotificationService
from homeserver.push.pushers import PusherService
from homeserver.push.pushers_store import PusherStore
from homeserver.push.service import PushRuleService
from homeserver.push.store import PushRuleStore
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database
from homeserver.userdata.account_data import AccountDataService


def build_push_rules(db: Database, account_data: AccountDataService) -> PushRuleService:
    push = PushRuleService(db, PushRuleStore(), account_data)
    # m.push_rules reads as the default ruleset until the user changes a rule.
    account_data.providers["m.push_rules"] = push.client_ruleset
    return push


def build_pushers(
    db: Database,
    clock: Clock,
    rooms: RoomService,
    notifications: NotificationService,
    accounts: AccountService,
    allow_local: bool,
) -> PusherService:
    """Pushers get every notification row, and a badge update on read receipts."""

    async def badge(user_id: str) -> int:
        joined = await rooms.members.rooms_for_user(user_id, ("join",))
        infos = await rooms.rooms.rooms_by_nid(m.room_nid for m in joined)
        counts = await notifications.unread_counts(user_id, list(infos.values()), False)
        return sum(c.main.notifications for c in counts.values())

    async def room_name(room_id: str, sender: str) -> dict[str, str]:
        room = await rooms.rooms.get_room(room_id)
        if room is None:
            return {}
        keys = [("m.room.name", ""), ("m.room.canonical_alias", ""), ("m.room.member", sender)]
        state = await rooms.current_state(room, keys)
        out: dict[str, str] = {}
        name = state.get(("m.room.name", ""))
        alias = state.get(("m.room.canonical_alias", ""))
        member = state.get(("m.room.member", sender))
        if name is not None and isinstance(name.event.content.get("name"), str):
            out["room_name"] = name.event.content["name"]
        elif alias is not None and isinstance(alias.event.content.get("alias"), str):
            out["room_name"] = alias.event.content["alias"]
        if member is not None and isinstance(member.event.content.get("displayname"), str):
            out["sender_display_name"] = member.event.content["displayname"]
        return out

    store = PusherStore(db)
    delivery = PushDelivery(
        store, notifications.store, rooms.events.by_nids, clock, allow_local, badge
    )
    delivery.room_name = room_name
    pushers = PusherService(store, clock, delivery, rooms.events.current_position)
    notifications.row_hooks.append(pushers.on_push_rows)
    accounts.devices_deleted_hooks.append(pushers.on_devices_deleted)
    accounts.deactivated_hooks.append(pushers.on_deactivated)
    return pushers


def attach_email_pushes(
    pushers: PusherService,
    notifications: NotificationService,
    threepids: ThreepidService,
    accounts: AccountStore,
    clock: Clock,
    email: EmailConfig,
) -> None:
    """Enable pusher kind ``email`` when the server can send mail."""
    if not email.enabled:
        return

    async def owns(user_id: str, address: str) -> bool:
        user = await accounts.get_user(user_id)
        nid = await threepids.owner_of("email", canonical_email(address))
        return user is not None and nid == user.user_nid

    pushers.delivery.email = EmailPushes(
        Mailer(email), owns, notifications.store, clock, email.notif_delay_ms, email.client_base_url
    )
