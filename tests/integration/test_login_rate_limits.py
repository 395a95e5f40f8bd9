"""Login and registration abuse (Synapse's rc_login shape): per IP, per account,
failed attempts per account from any IP; 429 M_LIMIT_EXCEEDED with retry_after_ms
and a Retry-After header. Client IPs come from X-Forwarded-For, which Myelin honours
from a loopback proxy, as the test client is."""

from __future__ import annotations

from typing import Any

from tests.conftest import ServerFactory
from tests.helpers import Api, Reply

SLOW = 0.001  # per second: no token comes back during a test


def bucket(burst: int) -> dict[str, Any]:
    return {"per_second": SLOW, "burst_count": burst}


def limits(**login: int) -> dict[str, Any]:
    roomy = {"address": bucket(100), "account": bucket(100), "failed_attempts": bucket(100)}
    roomy.update({k: bucket(v) for k, v in login.items()})
    return {"enabled": True, "login": roomy, "registration": bucket(100)}


async def login_from(api: Api, ip: str, user: str, password: str) -> Reply:
    return await api.post(
        "/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        },
        headers={"X-Forwarded-For": ip},
    )


def assert_limited(r: Reply) -> None:
    assert r.status == 429, r.body
    assert r.body["errcode"] == "M_LIMIT_EXCEEDED"
    assert isinstance(r.body["error"], str)
    assert isinstance(r.body["retry_after_ms"], int) and r.body["retry_after_ms"] > 0
    assert int(r.headers["Retry-After"]) == -(-r.body["retry_after_ms"] // 1000)


async def test_failed_attempts_per_account_from_any_ip(make_server: ServerFactory) -> None:
    server = await make_server(rate_limits=limits(failed_attempts=3))
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        await api.register("bob")
        # Password guessing spread over many addresses still counts against alice.
        for n in range(3):
            assert (await login_from(api, f"10.0.0.{n}", "alice", "guess")).status == 403
        r = await login_from(api, "10.0.0.9", "alice", "guess")
        assert_limited(r)
        # While limited even the right password is refused (no oracle for guesses)...
        assert_limited(await login_from(api, "10.0.0.10", "alice", alice.password))
        # ...but other accounts are untouched, and alice's sessions keep working.
        assert (await login_from(api, "10.0.0.1", "bob", "correct horse battery")).status == 200
        assert (await api.get("/account/whoami", token=alice.access_token)).status == 200


async def test_successful_logins_do_not_count_as_failures(make_server: ServerFactory) -> None:
    server = await make_server(rate_limits=limits(failed_attempts=1, account=3))
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        for _ in range(3):
            assert (await login_from(api, "10.0.1.1", "alice", alice.password)).status == 200
        # The per-account bucket of successful logins is now empty.
        assert_limited(await login_from(api, "10.0.1.2", "alice", alice.password))


async def test_every_attempt_per_address(make_server: ServerFactory) -> None:
    server = await make_server(rate_limits=limits(address=2))
    async with Api(server.client_url) as api:
        await api.register("alice")
        await api.register("bob")
        assert (await login_from(api, "10.0.2.1", "alice", "guess")).status == 403
        assert (await login_from(api, "10.0.2.1", "bob", "guess")).status == 403
        # A third account from the same address: refused before any password check.
        assert_limited(await login_from(api, "10.0.2.1", "carol", "guess"))
        # Another address is not affected.
        assert (await login_from(api, "10.0.2.2", "carol", "guess")).status == 403


async def test_registration_per_address(make_server: ServerFactory) -> None:
    server = await make_server(
        rate_limits={"enabled": True, "registration": bucket(2), "login": limits()["login"]},
        registration={"allow_guests": True},
    )
    async with Api(server.client_url) as api:

        async def register(ip: str, name: str) -> Reply:
            return await api.post(
                "/register",
                {"username": name, "password": "pw-pw-pw", "auth": {"type": "m.login.dummy"}},
                headers={"X-Forwarded-For": ip},
            )

        assert (await register("10.0.3.1", "u1")).status == 200
        assert (await register("10.0.3.1", "u2")).status == 200
        r = await register("10.0.3.1", "u3")
        assert_limited(r)
        # Refused: nothing was created.
        r = await api.get("/register/available", params={"username": "u3"})
        assert r.status == 200 and r.body == {"available": True}
        # Guest accounts share the bucket.
        r = await api.post("/register?kind=guest", {}, headers={"X-Forwarded-For": "10.0.3.1"})
        assert_limited(r)
        assert (await register("10.0.3.2", "u3")).status == 200
