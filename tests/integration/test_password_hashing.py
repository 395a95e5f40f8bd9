"""Password hashing: bounded concurrency, configured argon2id cost, rehash on login."""

from __future__ import annotations

import asyncio
import threading

from argon2 import PasswordHasher, extract_parameters

from homeserver.accounts.passwords import PasswordHashing
from homeserver.app import HomeServer
from homeserver.config import PasswordHashingConfig
from tests.conftest import ServerFactory
from tests.helpers import Api

# argon2-cffi's own defaults, which Myelin used before the cost was configurable.
OLD_HASHER = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4)


async def stored_hash(hs: HomeServer, user_id: str) -> str:
    user = await hs.accounts.store.get_user(user_id)
    assert user is not None and user.password_hash
    return str(user.password_hash)


async def test_login_rehashes_a_hash_made_under_old_parameters(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        current = extract_parameters(await stored_hash(hs, alice.user_id))
        # The default is OWASP's argon2id profile with the least memory, one hash at once.
        assert (current.memory_cost, current.time_cost, current.parallelism) == (7168, 5, 1)
        assert hs.config.password_hashing.max_concurrent == 1

        user = await hs.accounts.store.get_user(alice.user_id)
        assert user is not None
        old_hash = OLD_HASHER.hash(alice.password)
        await hs.accounts.store.set_password_hash(user.user_nid, old_hash)

        # A wrong password leaves the old hash alone.
        r = await api.login("alice", "not the password")
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        assert await stored_hash(hs, alice.user_id) == old_hash

        # The old hash still verifies, and the login stores a hash under the new cost.
        r = await api.login("alice", alice.password)
        assert r.status == 200, r.body
        new_hash = await stored_hash(hs, alice.user_id)
        assert new_hash != old_hash
        params = extract_parameters(new_hash)
        assert (params.memory_cost, params.time_cost, params.parallelism) == (7168, 5, 1)

        # A current hash is not rewritten on the next login, and still works.
        r = await api.login("alice", alice.password)
        assert r.status == 200, r.body
        assert await stored_hash(hs, alice.user_id) == new_hash


async def test_configured_cost_is_used_and_changing_it_rehashes(
    make_server: ServerFactory,
) -> None:
    cheap = {"memory_cost_kib": 8192, "time_cost": 1, "parallelism": 1, "max_concurrent": 1}
    server = await make_server(password_hashing=cheap)
    async with Api(server.client_url) as api:
        bob = await api.register("bob")
        params = extract_parameters(await stored_hash(server.hs, bob.user_id))
        assert (params.memory_cost, params.time_cost) == (8192, 1)
        # Hashes made under the cheap setting are upgraded once the setting changes.
        cheap_pool = server.hs.accounts.passwords
        server.hs.accounts.passwords = PasswordHashing(PasswordHashingConfig())
        cheap_pool.close()
        r = await api.login("bob", bob.password)
        assert r.status == 200, r.body
        params = extract_parameters(await stored_hash(server.hs, bob.user_id))
        assert (params.memory_cost, params.time_cost) == (7168, 5)


async def test_concurrent_logins_hash_at_most_max_concurrent_at_once(
    make_server: ServerFactory,
) -> None:
    server = await make_server(password_hashing={"max_concurrent": 1, "memory_cost_kib": 8192})
    async with Api(server.client_url) as api:
        users = [await api.register(f"user{i}") for i in range(4)]
        replies = await asyncio.gather(*(api.login(u.user_id, u.password) for u in users))
        assert [r.status for r in replies] == [200] * 4
    passwords = server.hs.accounts.passwords
    assert passwords.peak_running == 1
    assert passwords.running == 0


async def test_pool_bound_holds_while_hashes_wait() -> None:
    """Six hashes queued on a pool of two: exactly two run while the others wait."""
    hashing = PasswordHashing(PasswordHashingConfig(max_concurrent=2, memory_cost_kib=8192))
    gate = threading.Event()
    real = hashing._hasher

    class GatedHasher(PasswordHasher):
        """The real hasher, each hash held until the gate opens."""

        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            gate.wait(timeout=30)
            return real.hash(password)

    hashing._hasher = GatedHasher(time_cost=real.time_cost, memory_cost=real.memory_cost)
    try:
        tasks = [asyncio.ensure_future(hashing.hash(f"pw{i}")) for i in range(6)]
        for _ in range(1000):  # until both workers hold a hash (bounded)
            if hashing.running == 2:
                break
            await asyncio.sleep(0.01)
        assert hashing.running == 2
        assert not any(t.done() for t in tasks)
        gate.set()
        hashes = await asyncio.gather(*tasks)
        assert hashing.peak_running == 2
        assert hashing.running == 0
        for i, h in enumerate(hashes):
            assert await hashing.check(f"pw{i}", h)
            assert not await hashing.check("wrong", h)
    finally:
        gate.set()
        hashing.close()
