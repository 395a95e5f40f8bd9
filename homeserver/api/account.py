"""Client API: /register, /login, /refresh, /logout, /account/* (spec: "Client Authentication")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator, token_from_request
from homeserver.accounts.login_tokens import LoginTokens
from homeserver.accounts.registration_tokens import RegistrationTokens
from homeserver.accounts.service import AccountService
from homeserver.accounts.threepids import EMAIL, ThreepidService
from homeserver.accounts.uia import UiaOutcome, UiaService
from homeserver.api.routes import client_routes
from homeserver.appservices.service import AS_REGISTRATION, AppServices
from homeserver.errors import MatrixError, forbidden
from homeserver.http.bodies import json_body, opt_bool, opt_dict, opt_str, req_str
from homeserver.http.shell import json_response
from homeserver.identity.bindings import BindingService
from homeserver.net import client_ip
from homeserver.ratelimit import RateLimiter

# What a registration UIA session remembers of the request that started it.
_REGISTRATION_PARAMS = (
    "username",
    "device_id",
    "initial_device_display_name",
    "inhibit_login",
    "refresh_token",
)
EMAIL_STAGE = "m.login.email.identity"


class AccountApi:
    def __init__(
        self,
        accounts: AccountService,
        auth: Authenticator,
        uia: UiaService,
        limiter: RateLimiter,
        tokens: RegistrationTokens,
        threepids: ThreepidService,
        login_tokens: LoginTokens,
        app_services: AppServices | None = None,
        bindings: BindingService | None = None,
    ) -> None:
        self.app_services = app_services
        self.bindings = bindings
        self.accounts = accounts
        self.tokens = tokens
        self.threepids = threepids
        self.login_tokens = login_tokens
        self.auth = auth
        self.uia = uia
        self.limiter = limiter
        self.reg = accounts.config.registration

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("GET", "/login", self.get_login),
            *client_routes("POST", "/login", self.post_login),
            *client_routes("POST", "/refresh", self.post_refresh),
            *client_routes("POST", "/register", self.post_register),
            *client_routes("GET", "/register/available", self.get_available),
            *client_routes("POST", "/logout", self.post_logout),
            *client_routes("POST", "/logout/all", self.post_logout_all),
            *client_routes("GET", "/account/whoami", self.get_whoami),
            *client_routes("POST", "/account/password", self.post_password),
            *client_routes("POST", "/account/deactivate", self.post_deactivate),
        ]

    # ---------------------------------------------------------------- login

    async def get_login(self, request: web.Request) -> web.Response:
        flows: list[dict[str, Any]] = [{"type": "m.login.password"}]
        if self.login_tokens.config.enabled:
            # Spec v1.7: m.login.token with get_login_token says /login/get_token exists.
            flows.append({"type": "m.login.token", "get_login_token": True})
        if self.app_services is not None and self.app_services.services:
            flows.append({"type": AS_REGISTRATION})
        return json_response({"flows": flows})

    async def post_login(self, request: web.Request) -> web.Response:
        # Synapse's rc_login: every attempt per IP; per account, failures (from any
        # IP) and successes. Checked before the (slow) password hash is computed.
        ip = client_ip(request)
        body = await json_body(request)
        login_type = req_str(body, "type")
        if login_type == AS_REGISTRATION and self.app_services is not None:
            return await self._app_service_login(request, body)
        self.limiter.check("per_ip", ip)
        self.limiter.check("login_address", ip)
        if login_type == "m.login.token" and self.login_tokens.config.enabled:
            return await self._login_with_token(body)
        if login_type != "m.login.password":
            raise MatrixError(400, "M_UNKNOWN", f"Unknown login type {login_type}")
        third_party = _login_threepid(body)
        user = _login_user(body) if third_party is None else third_party[1]
        password = req_str(body, "password")
        if third_party is not None:
            # Spec: a 3PID the server does not know answers 403, like a wrong password.
            owner = await self.threepids.owner_of(*third_party)
            user_id = None if owner is None else await self._user_id_of(owner)
        else:
            user_id = await self.accounts.resolve_login_user(user)
        account = user_id or user
        self.limiter.peek("login_failed", account)
        self.limiter.peek("login_account", account)
        try:
            session = await self.accounts.login_with_password(
                user_id,
                password,
                device_id=opt_str(body, "device_id"),
                display_name=opt_str(body, "initial_device_display_name"),
                want_refresh=opt_bool(body, "refresh_token", False),
            )
        except MatrixError as e:
            if e.errcode == "M_FORBIDDEN":
                self.limiter.record("login_failed", account)
            raise
        self.limiter.record("login_account", account)
        return json_response(session.to_json(self.accounts.server_name))

    async def _app_service_login(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        """Spec "Appservice Login": a device for a user of the service's namespace,
        authenticated by its as_token (bridges create their users' devices this way)."""
        assert self.app_services is not None
        token = token_from_request(request)
        if token is None:
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
        service = self.app_services.by_as_token(token)
        if service is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown application service token")
        if service.rate_limited:
            self.limiter.check("login_address", client_ip(request))
        user_id = await self.accounts.resolve_login_user(_login_user(body))
        if user_id is None or not service.is_interested_in_user(user_id):
            raise forbidden("User is not in this application service's namespace")
        user = await self.accounts.store.get_user(user_id)
        if user is None or user.deactivated:
            raise forbidden("Unknown user")
        session = await self.accounts.start_session(
            user,
            opt_str(body, "device_id"),
            opt_str(body, "initial_device_display_name"),
            opt_bool(body, "refresh_token", False),
        )
        return json_response(session.to_json(self.accounts.server_name))

    async def _user_id_of(self, user_nid: int) -> str | None:
        user = await self.accounts.store.get_user_by_nid(user_nid)
        return None if user is None else user.user_id

    async def _login_with_token(self, body: dict[str, Any]) -> web.Response:
        """``m.login.token``: a token from /login/get_token, used once."""
        user_nid = await self.login_tokens.redeem(req_str(body, "token"))
        session = await self.accounts.login_as(
            user_nid,
            device_id=opt_str(body, "device_id"),
            display_name=opt_str(body, "initial_device_display_name"),
            want_refresh=opt_bool(body, "refresh_token", False),
        )
        return json_response(session.to_json(self.accounts.server_name))

    async def post_refresh(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        session = await self.accounts.refresh(req_str(body, "refresh_token"))
        return json_response(
            {
                "access_token": session.access_token,
                "refresh_token": session.refresh_token,
                "expires_in_ms": session.expires_in_ms,
            }
        )

    # --------------------------------------------------------- registration

    async def _registration_flows(self) -> list[list[str]]:
        flows = []
        # registration.require_email: every flow proves an address; otherwise, with
        # email configured, proving one is offered beside the dummy stage.
        last = EMAIL_STAGE if self.reg.require_email else "m.login.dummy"
        if self.reg.enabled:
            flows.append([last])
            if last != EMAIL_STAGE and self.threepids.enabled:
                flows.append([EMAIL_STAGE])
        if await self.tokens.offered():
            # The trailing dummy stage is what Synapse offers and what matrix-nio's
            # register_with_token expects (token first, then dummy with the same session).
            flows.append(["m.login.registration_token", last])
        return flows

    async def _check_registration_stage(
        self, stage: str, auth: dict[str, Any]
    ) -> bool | dict[str, Any]:
        if stage == "m.login.dummy":
            return True
        if stage == "m.login.registration_token":
            return await self.tokens.check_stage(auth)
        if stage == EMAIL_STAGE:
            return await self.threepids.check_email_stage(auth)
        return False

    async def post_register(self, request: web.Request) -> web.Response:
        token = token_from_request(request)
        if token is not None and self.app_services is not None:
            service = self.app_services.by_as_token(token)
            if service is not None:
                return await self._register_app_service_user(request, service.id)
        self.limiter.check("per_ip", client_ip(request))
        self.limiter.check("registration", client_ip(request))
        kind = request.query.get("kind", "user")
        body = await json_body(request, allow_empty=True)
        if kind == "guest":
            return await self._register_guest(body)
        if kind != "user":
            raise MatrixError(400, "M_INVALID_PARAM", "kind must be 'user' or 'guest'")
        flows = await self._registration_flows()
        if not flows:
            raise forbidden("Registration is disabled")
        # Type-check what this request carries; the session may supply the rest.
        username = opt_str(body, "username")
        password = opt_str(body, "password")
        opt_bool(body, "inhibit_login", False)
        opt_str(body, "device_id")
        opt_str(body, "initial_device_display_name")
        opt_bool(body, "refresh_token", False)
        auth = body.get("auth")
        guest_token = opt_str(body, "guest_access_token")
        guest = None
        if guest_token is not None:
            guest = await self.accounts.guest_to_upgrade(guest_token, username)
        outcome = await self.uia.completed_result(auth, "register")
        if outcome is None:
            if username is not None and guest is None:
                await self.accounts.check_available(username)
            outcome = await self.uia.authenticate(
                auth,
                flows=flows,
                operation="register",
                user_nid=None,
                check_stage=self._check_registration_stage,
                request=await self._remembered(body, password),
                keep=True,
            )
        params = outcome.body
        if outcome.result is not None:
            # A retry with a session that already registered: the same user again
            # (spec: registration is idempotent within a session).
            user_id = str(outcome.result["user_id"])
        else:
            pw_hash = params.get("password_hash")
            password_hash = pw_hash if isinstance(pw_hash, str) else None
            name = params.get("username")
            if guest is not None:
                # The guest keeps their user id, rooms and devices; new login below.
                user_id = guest.user_id
                await self.accounts.upgrade_guest(guest, password_hash)
            else:
                if isinstance(name, str):
                    user_id = await self.accounts.check_available(name)
                else:
                    user_id = await self.accounts.new_guest_user_id()
                email = outcome.stages.get(EMAIL_STAGE)
                owner = (
                    None
                    if email is None
                    else await self.threepids.owner_of(EMAIL, email["address"])
                )
                if owner is not None:
                    raise MatrixError(400, "M_THREEPID_IN_USE", "This address is already in use")
                await self.accounts.create_account(user_id, None, password_hash=password_hash)
            await self._attach_email(user_id, outcome)
            await self.tokens.registered(auth)
            await self.uia.set_result(outcome.session_id, {"user_id": user_id})
        if params.get("inhibit_login") is True:
            return json_response({"user_id": user_id, "home_server": self.accounts.server_name})
        user = await self.accounts.store.get_user(user_id)
        assert user is not None
        device_id = params.get("device_id")
        display_name = params.get("initial_device_display_name")
        session = await self.accounts.start_session(
            user,
            device_id if isinstance(device_id, str) else None,
            display_name if isinstance(display_name, str) else None,
            params.get("refresh_token") is True,
        )
        return json_response(session.to_json(self.accounts.server_name))

    async def _register_app_service_user(self, request: web.Request, as_id: str) -> web.Response:
        """Registration by an application service (``m.login.application_service``):
        no UIA, only user ids in its namespace, even where registration is closed."""
        assert self.app_services is not None
        body = await json_body(request, allow_empty=True)
        service = self.app_services.by_id(as_id)
        assert service is not None
        if service.rate_limited:
            self.limiter.check("registration", client_ip(request))
        if body.get("type") != AS_REGISTRATION:
            raise MatrixError(
                400, "M_INVALID_PARAM", f"Application services must register with {AS_REGISTRATION}"
            )
        user_id = await self.app_services.register_user(service, req_str(body, "username"))
        if opt_bool(body, "inhibit_login", False):
            return json_response({"user_id": user_id, "home_server": self.accounts.server_name})
        user = await self.accounts.store.get_user(user_id)
        assert user is not None
        session = await self.accounts.start_session(
            user,
            opt_str(body, "device_id"),
            opt_str(body, "initial_device_display_name"),
            opt_bool(body, "refresh_token", False),
        )
        return json_response(session.to_json(self.accounts.server_name))

    async def _attach_email(self, user_id: str, outcome: UiaOutcome) -> None:
        """The address the registration proved becomes the account's (spec: registering
        with m.login.email.identity adds it, so it can reset the password later)."""
        email = outcome.stages.get(EMAIL_STAGE)
        user = await self.accounts.store.get_user(user_id)
        if email is None or user is None:
            return
        await self.threepids.add(user.user_nid, EMAIL, email["address"], email["validated_at"])
        await self.threepids.used(email["sid"])

    async def _remembered(self, body: dict[str, Any], password: str | None) -> dict[str, Any]:
        """The registration parameters a UIA session keeps (the password only hashed)."""
        kept = {k: body[k] for k in _REGISTRATION_PARAMS if k in body}
        if password is not None:
            kept["password_hash"] = await self.accounts.hash_new_password(password)
        return kept

    async def _register_guest(self, body: dict[str, Any]) -> web.Response:
        if not self.reg.allow_guests:
            raise MatrixError(
                403, "M_GUEST_ACCESS_FORBIDDEN", "Guest accounts are not enabled on this server"
            )
        user_id = await self.accounts.new_guest_user_id()
        await self.accounts.create_account(user_id, None, is_guest=True)
        user = await self.accounts.store.get_user(user_id)
        assert user is not None
        session = await self.accounts.start_session(
            user,
            None,
            opt_str(body, "initial_device_display_name"),
            opt_bool(body, "refresh_token", False),
        )
        return json_response(session.to_json(self.accounts.server_name))

    async def get_available(self, request: web.Request) -> web.Response:
        self.limiter.check("per_ip", client_ip(request))
        username = request.query.get("username")
        if username is None:
            raise MatrixError(400, "M_MISSING_PARAM", "'username' is required")
        await self.accounts.check_available(username)
        return json_response({"available": True})

    # --------------------------------------------------------------- logout

    async def post_logout(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        await self.accounts.logout(requester)
        return json_response({})

    async def post_logout_all(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        await self.accounts.logout_all(requester)
        return json_response({})

    async def get_whoami(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        answer: dict[str, Any] = {"user_id": requester.user_id, "is_guest": requester.is_guest}
        # An application service acting without device_id= has no device.
        if requester.device_id:
            answer["device_id"] = requester.device_id
        return json_response(answer)

    # ------------------------------------------------ password, deactivation

    async def post_password(self, request: web.Request) -> web.Response:
        if token_from_request(request) is None and self.threepids.enabled:
            return await self._reset_password_by_email(request)
        requester = await self.auth.requester(request)
        body = await json_body(request)
        new_password = req_str(body, "new_password")
        logout_devices = opt_bool(body, "logout_devices", True)
        await self.accounts.require_password(self.uia, requester, body.get("auth"), "password")
        await self.accounts.change_password(requester, new_password, logout_devices)
        return json_response({})

    async def _reset_password_by_email(self, request: web.Request) -> web.Response:
        """Spec: without an access token, ``/account/password`` proves the account by an
        email address it has (m.login.email.identity, after /account/password/email/
        requestToken); ``logout_devices`` (default true) logs every device out."""
        self.limiter.check("per_ip", client_ip(request))
        body = await json_body(request)
        new_password = req_str(body, "new_password")
        logout_devices = opt_bool(body, "logout_devices", True)
        outcome = await self.uia.authenticate(
            body.get("auth"),
            flows=[[EMAIL_STAGE]],
            operation="password_reset",
            user_nid=None,
            check_stage=lambda _stage, auth: self.threepids.check_email_stage(auth),
        )
        email = outcome.stages[EMAIL_STAGE]
        user_nid = await self.threepids.owner_of(EMAIL, email["address"])
        if user_nid is None:
            raise MatrixError(400, "M_THREEPID_NOT_FOUND", "No account has this address")
        await self.accounts.reset_password(user_nid, new_password, logout_devices)
        await self.threepids.used(email["sid"])
        return json_response({})

    async def post_deactivate(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        erase = opt_bool(body, "erase", False)
        id_server = opt_str(body, "id_server")
        await self.accounts.require_password(self.uia, requester, body.get("auth"), "deactivate")
        # Spec: the bindings made through us go too, before the account does.
        result = "no-support"
        if self.bindings is not None:
            result = await self.bindings.unbind_all(requester.user_id, id_server)
        await self.accounts.deactivate(requester.user_id, erase=erase)
        return json_response({"id_server_unbind_result": result})


def _login_threepid(body: dict[str, Any]) -> tuple[str, str] | None:
    """(medium, address) when the login names a third-party id: ``m.id.thirdparty``, the
    spec's untyped ``{medium, address}`` identifier, or the old top-level fields."""
    identifier = opt_dict(body, "identifier")
    source = body
    if identifier is not None:
        id_type = identifier.get("type")
        if id_type not in ("m.id.thirdparty", None):
            return None
        source = identifier
    medium, address = source.get("medium"), source.get("address")
    if medium is None and address is None:
        return None
    if not isinstance(medium, str) or not isinstance(address, str) or not address:
        raise MatrixError(400, "M_BAD_JSON", "'medium' and 'address' must be strings")
    return medium, address


def _login_user(body: dict[str, Any]) -> str:
    """The user named by a login request: ``identifier`` (m.id.user) or the old ``user``."""
    identifier = opt_dict(body, "identifier")
    if identifier is not None:
        id_type = identifier.get("type")
        if id_type != "m.id.user":
            raise MatrixError(400, "M_UNKNOWN", f"Unsupported identifier type {id_type}")
        user = identifier.get("user")
        if not isinstance(user, str) or not user:
            raise MatrixError(400, "M_BAD_JSON", "'identifier.user' must be a string")
        return user
    return req_str(body, "user")
