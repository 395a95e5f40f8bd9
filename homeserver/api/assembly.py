"""Every client-server API handler, built over the services in one place.

The composition root (``homeserver/app.py``) builds the services and hands
them here; the domain packages never see a handler class, so they do not
know HTTP exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.login_tokens import LoginTokens
from homeserver.accounts.openid import OpenIdTokens
from homeserver.accounts.service import AccountService
from homeserver.accounts.threepids import ThreepidService
from homeserver.accounts.uia import UiaService
from homeserver.api.account import AccountApi
from homeserver.api.account_data import AccountDataApi
from homeserver.api.admin.area import AdminArea
from homeserver.api.admin.media import MediaAdminApi
from homeserver.api.admin_register import AdminRegisterApi
from homeserver.api.appservice import AppServiceApi
from homeserver.api.devices import DevicesApi
from homeserver.api.directory import DirectoryApi
from homeserver.api.discovery import DiscoveryApi
from homeserver.api.ephemeral import EphemeralApi
from homeserver.api.filters import FilterApi
from homeserver.api.keys import KeysApi
from homeserver.api.legacy_sync import LegacySyncApi
from homeserver.api.login_token import LoginTokenApi
from homeserver.api.media import MediaApi
from homeserver.api.membership import MembershipApi
from homeserver.api.messages import MessagesApi
from homeserver.api.notifications import NotificationsApi
from homeserver.api.openid import OpenIdApi
from homeserver.api.peek import PeekApi
from homeserver.api.presence import PresenceApi
from homeserver.api.profile import ProfileApi
from homeserver.api.pushers import PushersApi
from homeserver.api.pushrules import PushRulesApi
from homeserver.api.room_features import RoomFeaturesApi
from homeserver.api.room_keys import RoomKeysApi
from homeserver.api.rooms import RoomsApi
from homeserver.api.search import SearchApi
from homeserver.api.sliding_sync import SlidingSyncApi
from homeserver.api.spaces import SpacesApi
from homeserver.api.sync import SyncApi
from homeserver.api.third_party_invites import ThirdPartyInviteApi
from homeserver.api.threepids import ThreepidApi
from homeserver.api.timestamp import TimestampApi
from homeserver.api.to_device import ToDeviceApi
from homeserver.api.voip import VoipApi
from homeserver.appservices.service import AppServices
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.e2ee.wiring import E2ee
from homeserver.identity.bindings import BindingService
from homeserver.media.service import MediaService
from homeserver.push.service import PushRuleService
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.ephemeral.receipts import ReceiptService
from homeserver.rooms.ephemeral.typing import TypingService
from homeserver.rooms.wiring import RoomsArea
from homeserver.sync.wiring import SyncArea
from homeserver.userdata.services import UserDataServices

if TYPE_CHECKING:
    from homeserver.media.preview import UrlPreviewer


def client_apis(
    *,
    config: Config,
    clock: Clock,
    auth: Authenticator,
    uia: UiaService,
    limiter: RateLimiter,
    accounts: AccountService,
    typing: TypingService,
    receipts: ReceiptService,
    userdata: UserDataServices,
    push: PushRuleService,
    e2ee: E2ee,
    rooms: RoomsArea,
    sync: SyncArea,
    media: MediaService,
    previewer: UrlPreviewer | None,
    admin: AdminArea,
    openid: OpenIdTokens,
    threepids: ThreepidService,
    bindings: BindingService,
    login_tokens: LoginTokens,
    unstable_features: dict[str, bool],
    app_services: AppServices,
) -> list[Any]:
    """One handler object per area of the client API; each has ``routes()``."""
    ud = userdata
    return [
        DiscoveryApi(config, auth, unstable_features),
        AccountApi(
            accounts,
            auth,
            uia,
            limiter,
            admin.tokens,
            threepids,
            login_tokens,
            app_services,
            bindings,
        ),
        ThreepidApi(accounts, threepids, bindings, auth, uia, limiter),
        ThirdPartyInviteApi(rooms.third_party, limiter),
        LoginTokenApi(accounts, login_tokens, auth, uia, limiter),
        DevicesApi(accounts, auth, uia),
        ProfileApi(accounts, auth),
        AdminRegisterApi(accounts, limiter),
        EphemeralApi(typing, receipts, auth),
        AccountDataApi(ud.account_data, auth),
        FilterApi(ud.filters, auth),
        PushRulesApi(push, auth),
        PresenceApi(ud.presence, auth),
        MediaApi(media, auth, previewer),
        KeysApi(e2ee.keys, e2ee.cross_signing, accounts, auth, uia),
        ToDeviceApi(e2ee.to_device, auth),
        RoomKeysApi(e2ee.backup, auth),
        RoomsApi(auth, rooms.rooms, rooms.creator, rooms.reader, rooms.aliases),
        MembershipApi(auth, rooms.memberships, rooms.reader, rooms.third_party),
        MessagesApi(auth, rooms.reader),
        DirectoryApi(auth, rooms.aliases),
        SyncApi(auth, sync.sync),
        LegacySyncApi(auth, sync.legacy, rooms.reader),
        PeekApi(auth, sync.peeks),
        SlidingSyncApi(auth, sync.sliding),
        SpacesApi(auth, rooms.hierarchy),
        TimestampApi(auth, rooms.timestamps),
        RoomFeaturesApi(auth, rooms.upgrader, rooms.directory, rooms.relations, rooms.reports),
        SearchApi(auth, rooms.search, rooms.user_directory),
        VoipApi(auth, config.turn, clock),
        NotificationsApi(auth, sync.notifications),
        PushersApi(auth, sync.pushers),
        OpenIdApi(auth, openid),
        *admin.apis(auth, config, limiter),
        MediaAdminApi(auth, media),
        AppServiceApi(auth, app_services, rooms.directory),
    ]


def federation_listener_routes(auth: Authenticator, openid: OpenIdTokens) -> list[web.RouteDef]:
    """Client-API-side routes the federation listener serves too: OpenID userinfo,
    which third parties call with an OpenID token, not X-Matrix."""
    return OpenIdApi(auth, openid).userinfo_routes()
