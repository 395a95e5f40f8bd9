"""Builds the admin area (services and APIs of issue 14) for the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.accounts.admin import UserAdmin
from homeserver.accounts.admin_store import UserAdminStore
from homeserver.accounts.auth import Authenticator
from homeserver.accounts.registration_tokens import RegistrationTokens
from homeserver.accounts.registration_tokens_store import RegistrationTokenStore
from homeserver.accounts.service import AccountService
from homeserver.accounts.threepids import ThreepidService
from homeserver.api.admin.purge import PurgeAdminApi
from homeserver.api.admin.registration_tokens import RegistrationTokensApi
from homeserver.api.admin.reports import ReportsApi
from homeserver.api.admin.rooms import RoomAdminApi
from homeserver.api.admin.server import ServerAdminApi
from homeserver.api.admin.users import UserAdminApi
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.admin import RoomAdmin
from homeserver.rooms.report_admin import ReportAdmin
from homeserver.rooms.reports import ReportService
from homeserver.rooms.store.admin_store import RoomAdminStore
from homeserver.rooms.store.reports_store import ReportAdminStore
from homeserver.rooms.wiring import RoomsArea
from homeserver.storage.database import Database


@dataclass
class AdminArea:
    """Server administration (issue 14): accounts, rooms, tokens and reports for admins."""

    users: UserAdmin
    rooms: RoomAdmin
    tokens: RegistrationTokens
    reports: ReportAdmin
    user_reports: ReportService
    rooms_area: RoomsArea

    @classmethod
    def build(
        cls,
        config: Config,
        db: Database,
        clock: Clock,
        accounts: AccountService,
        area: RoomsArea,
        threepids: ThreepidService,
    ) -> AdminArea:
        rooms = RoomAdmin(
            area.rooms, area.memberships, area.serializer, RoomAdminStore(db), area.purger
        )
        area.memberships.blocked = rooms.is_blocked
        users = UserAdmin(accounts, UserAdminStore(db), threepids)
        # First: the account shows as erased before its events are pruned.
        accounts.erased_hooks.insert(0, users.mark_erased)

        async def user_known(user_id: str) -> bool:
            if user_id.endswith(":" + config.server_name):
                return await accounts.store.user_exists(user_id)
            known = ("join", "invite", "knock", "leave", "ban")
            return bool(await area.memberships_store.rooms_for_user(user_id, known))

        area.reports.user_known = user_known
        return cls(
            users=users,
            rooms=rooms,
            tokens=RegistrationTokens(
                RegistrationTokenStore(db), config.registration.tokens, clock
            ),
            reports=ReportAdmin(area.rooms, ReportAdminStore(db)),
            user_reports=area.reports,
            rooms_area=area,
        )

    def apis(self, auth: Authenticator, config: Config, limiter: RateLimiter) -> list[Any]:
        return [
            ServerAdminApi(auth, config.support),
            UserAdminApi(auth, self.users, self.rooms_area.reader.joined_rooms),
            RoomAdminApi(auth, self.rooms),
            PurgeAdminApi(auth, self.rooms_area.purger),
            RegistrationTokensApi(auth, self.tokens, limiter),
            ReportsApi(auth, self.user_reports, self.reports),
        ]
