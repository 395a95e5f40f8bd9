"""Builds the application services from ``app_service_config_files`` and connects
them to accounts (authentication, exclusive user ids), rooms (exclusive aliases,
unknown aliases and users queried from the services) and the ephemeral streams;
called by the composition root."""

from __future__ import annotations

from typing import Any

from homeserver.accounts.service import AccountService
from homeserver.appservices.registration import (
    AppService,
    RegistrationError,
    load_registrations,
)
from homeserver.appservices.service import AppServices
from homeserver.config import Config, ConfigError
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.rooms.ephemeral.receipts import READ, ReceiptService, receipt_content
from homeserver.rooms.ephemeral.receipts_store import ReceiptRecord
from homeserver.rooms.ephemeral.typing import TypingChange, TypingService
from homeserver.rooms.serialize import STRIPPED_STATE_KEYS, stripped_state
from homeserver.rooms.wiring import RoomsArea
from homeserver.storage.database import Database
from homeserver.userdata.presence import PresenceService


def read_registrations(config: Config) -> list[AppService]:
    """Every registration file; ``ConfigError`` for one that cannot be used (called
    first at start-up, before anything is opened)."""
    try:
        return load_registrations(config.app_service_config_files, config.server_name)
    except RegistrationError as e:
        raise ConfigError(f"app_service_config_files: {e}") from None


def build_app_services(
    config: Config,
    services: list[AppService],
    db: Database,
    accounts: AccountService,
    rooms: RoomsArea,
    typing: TypingService,
    receipts: ReceiptService,
    to_device: ToDeviceService,
    presence: PresenceService,
) -> AppServices:
    app_services = AppServices(services, accounts)
    if not services:
        return app_services
    # Here, not at the top: a server without application services never loads them.
    from homeserver.appservices.sender import RoomInterest, ServiceSender, typing_edu
    from homeserver.appservices.store import AppServiceStore

    accounts.auth.app_services = app_services.requester
    accounts.exclusive_user_check = app_services.check_user_not_exclusive
    rooms.rooms.alias_claim_check = app_services.check_alias_allowed
    accounts.unknown_user_query = app_services.query_user
    rooms.aliases.unknown_alias_query = app_services.query_alias
    store = AppServiceStore(db)

    async def invite_state(room_id: str, inviter: str) -> list[dict[str, Any]]:
        room = await rooms.rooms.rooms.get_room(room_id)
        if room is None:
            return []
        keys = [*STRIPPED_STATE_KEYS, ("m.room.member", inviter)]
        state = await rooms.rooms.current_state(room, keys)
        return stripped_state([state[k] for k in keys if k in state])

    for service in services:
        if service.url is None:
            continue  # the service only acts; nothing is pushed to it
        interest = RoomInterest(rooms.rooms.rooms, rooms.memberships_store, config.server_name)
        app_services.add_sender(
            ServiceSender(
                service,
                store,
                rooms.events,
                rooms.serializer,
                interest,
                app_services.session,
                config.app_service_min_retry_ms / 1000,
                config.app_service_max_retry_ms / 1000,
                to_device,
                invite_state,
                (presence.get_status, rooms.members.users_sharing_room_with),
            )
        )

    def on_typing(change: TypingChange) -> None:
        if change.changed:
            users = typing.typing_users(change.room_id)
            app_services.queue_ephemeral(typing_edu(change.room_id, users))

    def on_receipt(record: ReceiptRecord) -> None:
        if record.receipt_type == READ:  # private receipts stay private
            content = receipt_content([record])
            app_services.queue_ephemeral(
                {"type": "m.receipt", "room_id": record.room_id, "content": content}
            )

    to_device.local_hooks.append(app_services.on_to_device)

    def on_presence(user_id: str, _position: int) -> None:
        app_services.queue_ephemeral({"type": "m.presence", "sender": user_id})

    presence.change_hooks.append(on_presence)
    typing.change_hooks.append(on_typing)
    receipts.change_hooks.append(on_receipt)
    return app_services
