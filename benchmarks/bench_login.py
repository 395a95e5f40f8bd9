"""(a) Login throughput: POST /login with a password, a fixed count, some concurrency.

Password hashing dominates a login on purpose (Myelin: argon2id with argon2-cffi's default
cost; Synapse: bcrypt, 12 rounds). The cost of one hash alone is measured separately, in
this process, so the table shows how much of a login is the hash and how much the server.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from functools import partial
from typing import Any

from benchmarks.harness import (
    LOGIN_PASSWORD,
    Client,
    Deadline,
    Target,
    Workload,
    bounded_gather,
    main,
    summarize,
)

TIME_CAP_S = 120.0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logins", type=int, default=40, help="logins in total")
    p.add_argument("--login-concurrency", type=int, default=4)


def needs(args: argparse.Namespace) -> dict[str, tuple[int, bool]]:
    return {"login": (max(1, args.login_concurrency), True)}


def hash_cost_ms(kind: str, rounds: int = 5) -> float:
    """Median milliseconds of one password hash as each server configures it."""
    if kind == "myelin":
        from argon2 import PasswordHasher

        from homeserver.config import PasswordHashingConfig

        cost = PasswordHashingConfig()  # the default, as the benchmark server runs it
        hasher = PasswordHasher(
            time_cost=cost.time_cost, memory_cost=cost.memory_cost_kib, parallelism=cost.parallelism
        )
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            hasher.hash(LOGIN_PASSWORD)
            samples.append(time.perf_counter() - t0)
        return round(sorted(samples)[rounds // 2] * 1000, 1)
    from tests.interop.synapse import SYNAPSE_PYTHON

    code = (
        "import bcrypt,time\n"
        "s=[]\n"
        f"for _ in range({rounds}):\n"
        "    t=time.perf_counter(); bcrypt.hashpw(b'pw', bcrypt.gensalt(12)); "
        "s.append(time.perf_counter()-t)\n"
        f"print(sorted(s)[{rounds // 2}]*1000)\n"
    )
    out = subprocess.run(
        [str(SYNAPSE_PYTHON), "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return round(float(out.stdout.strip()), 1)


async def run(target: Target, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    users = target.users["login"]
    deadline = Deadline(TIME_CAP_S)
    samples: list[float] = []

    async def one(i: int) -> None:
        if deadline.expired:
            return
        user = users[i % len(users)]
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.localpart},
            "password": LOGIN_PASSWORD,
            "initial_device_display_name": "bench",
        }
        t0 = time.perf_counter()
        await client.request("POST", "/_matrix/client/v3/login", body=body)
        samples.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await bounded_gather(args.login_concurrency, [partial(one, i) for i in range(args.logins)])
    elapsed = time.perf_counter() - t0
    return {
        "logins_per_s": round(len(samples) / elapsed, 2),
        "latency": summarize(samples),
        "hash_ms": await asyncio.to_thread(hash_cost_ms, target.name),
        "capped": deadline.hit,
    }


WORKLOAD = Workload(
    "login",
    needs,
    run,
    [
        ("logins/s", "logins_per_s", False),
        ("login p50 (ms)", "latency.p50_ms", True),
        ("one password hash (ms)", "hash_ms", True),
    ],
)

if __name__ == "__main__":
    main([WORKLOAD], configure)
