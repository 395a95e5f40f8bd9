"""Access-token authentication for the client API.

Tokens arrive in ``Authorization: Bearer`` (or the deprecated
``access_token`` query parameter). The token is hashed and looked up by its
hash; hot tokens are cached in memory and evicted explicitly on logout,
device deletion, password change and deactivation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp import web

from homeserver.accounts.requester import Requester
from homeserver.accounts.secrets import hash_token
from homeserver.accounts.store import AccountStore
from homeserver.clock import Clock
from homeserver.errors import MatrixError
from homeserver.net import client_ip

_CACHE_SIZE = 10_000
# A device's "last seen" is written at most this often (or when its IP changes).
LAST_SEEN_INTERVAL_MS = 60_000
MAX_USER_AGENT = 512
# A cached token is checked against the database again after this long, so a
# change made by another process (the admin CLI: deactivation, password reset,
# admin flag) reaches a running server within this time.
CACHE_RECHECK_MS = 30_000
# Cache names on the cross-process bus (homeserver.streams.pg_bus).
SESSIONS_CACHE = "sessions"
USER_SESSIONS_CACHE = "user_sessions"


def missing_token() -> MatrixError:
    return MatrixError(401, "M_MISSING_TOKEN", "Missing access token")


def unknown_token(soft_logout: bool = False) -> MatrixError:
    if soft_logout:
        return MatrixError(401, "M_UNKNOWN_TOKEN", "Access token has expired", soft_logout=True)
    return MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown or revoked access token")


def token_from_request(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unknown_token()
        return value.strip()
    return request.query.get("access_token")


# An application service's token: the identity it asserts, or None for other tokens.
AppServiceAuth = Callable[[str, web.Request], Awaitable[Requester | None]]


class Authenticator:
    def __init__(self, store: AccountStore, clock: Clock, *, store_client_ips: bool = True) -> None:
        self._store = store
        self._clock = clock
        # privacy.store_client_ips: false records only when a device was last seen.
        self._store_client_ips = store_client_ips
        # token hash -> (requester, expires_ts, cached at)
        self._cache: OrderedDict[str, tuple[Requester, int | None, int]] = OrderedDict()
        # (user_nid, device_id) -> (ip, ts) last written to the devices table.
        self._last_seen: dict[tuple[int, str], tuple[str | None, int]] = {}
        # Set by the composition root when application services are configured.
        self.app_services: AppServiceAuth | None = None
        # Other processes drop what this one forgets (cache name, keys); None: one process.
        self.publish: Callable[[str, list[str]], None] | None = None

    async def requester(self, request: web.Request, *, allow_guest: bool = False) -> Requester:
        """The authenticated user, or 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN."""
        token = token_from_request(request)
        if token is None:
            raise missing_token()
        if self.app_services is not None:
            as_req = await self.app_services(token, request)
            if as_req is not None:
                return as_req  # no device "last seen" for a service
        req = await self.by_token(token)
        if req.is_guest and not allow_guest:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not allowed")
        if self._store_client_ips:
            user_agent = request.headers.get("User-Agent", "")[:MAX_USER_AGENT] or None
            await self._touch(req, client_ip(request), user_agent)
        else:
            await self._touch(req, None, None)
        return req

    async def _touch(self, req: Requester, ip: str | None, user_agent: str | None = None) -> None:
        """Record the device's last use (spec: last_seen_ip/last_seen_ts), throttled."""
        key = (req.user_nid, req.device_id)
        now = self._clock.now_ms()
        seen = self._last_seen.get(key)
        if seen is not None and seen[0] == ip and now - seen[1] < LAST_SEEN_INTERVAL_MS:
            return
        if len(self._last_seen) > _CACHE_SIZE:
            self._last_seen.clear()
        self._last_seen[key] = (ip, now)
        await self._store.touch_device(req.user_nid, req.device_id, ip, now, user_agent)

    async def optional_requester(self, request: web.Request) -> Requester | None:
        token = token_from_request(request)
        if token is None:
            return None
        if self.app_services is not None:
            as_req = await self.app_services(token, request)
            if as_req is not None:
                return as_req
        return await self.by_token(token)

    async def by_token(self, token: str) -> Requester:
        token_hash = hash_token(token)
        now = self._clock.now_ms()
        cached = self._cache.get(token_hash)
        if cached is not None and now - cached[2] >= CACHE_RECHECK_MS:
            cached = None
        if cached is None:
            rec = await self._store.get_access_token(token_hash)
            if rec is None or rec.deactivated:
                self._cache.pop(token_hash, None)
                raise unknown_token()
            req = Requester(
                user_id=rec.user_id,
                user_nid=rec.user_nid,
                device_id=rec.device_id,
                is_guest=rec.is_guest,
                is_admin=rec.is_admin,
                token_hash=token_hash,
            )
            cached = (req, rec.expires_ts, now)
            self._cache[token_hash] = cached
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(token_hash)
        req, expires_ts, _ = cached
        if expires_ts is not None and expires_ts <= now:
            raise unknown_token(soft_logout=True)
        return req

    def forget(self, token_hashes: list[str]) -> None:
        """The tokens were revoked: drop them here and in every other process."""
        self.drop_tokens(token_hashes)
        if self.publish is not None:
            self.publish(SESSIONS_CACHE, list(token_hashes))

    def forget_user(self, user_id: str) -> None:
        """The user's sessions changed (deactivated, admin, guest upgraded), everywhere."""
        self.drop_users([user_id])
        if self.publish is not None:
            self.publish(USER_SESSIONS_CACHE, [user_id])

    def drop_tokens(self, token_hashes: list[str] | None) -> None:
        """Drop cached tokens in this process only (None: every one)."""
        if token_hashes is None:
            self._cache.clear()
            return
        for h in token_hashes:
            self._cache.pop(h, None)

    def drop_users(self, user_ids: list[str] | None) -> None:
        """Drop the users' cached tokens in this process only (None: every one)."""
        if user_ids is None:
            self._cache.clear()
            return
        wanted = set(user_ids)
        for h, (req, _, _) in list(self._cache.items()):
            if req.user_id in wanted:
                del self._cache[h]
