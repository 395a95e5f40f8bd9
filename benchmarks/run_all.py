"""Run every benchmark against Myelin and Synapse (one server process each per engine) and
print one comparison table. Every size has a flag (``--help``).

    python -m benchmarks.run_all [--engine sqlite|postgres|both] [--no-synapse] [--json out.json]
    python -m benchmarks.run_all --curve-sizes 10,100,1000,10000   # issue 15's full curve
    python -m benchmarks.run_all --workloads remotejoin             # heavy: not in the default set

``--engine postgres`` (or ``both``) uses ``MYELIN_BENCH_PG_DSN`` when it is set, otherwise a
throw-away cluster of its own (``scripts/pg-throwaway``), stopped at the end. Both servers
get a fresh database there, with C collation.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from benchmarks import (
    bench_bigroom,
    bench_create,
    bench_curves,
    bench_fanout,
    bench_fed_ingest,
    bench_login,
    bench_remote_join,
    bench_rj,
    bench_send,
    bench_sync,
    harness,
)

MODULES = [
    bench_login,
    bench_rj,
    bench_send,
    bench_create,
    bench_fanout,
    bench_sync,
    bench_fed_ingest,
    bench_bigroom,
    bench_curves,
    bench_remote_join,
]
# Run only when named in --workloads (or with --workloads all): at issue 15's size the
# remote join sets up 5,000 members over HTTP (25 minutes a server kind on 2 busy cores).
HEAVY = {bench_remote_join.WORKLOAD.name}


def configure(p: argparse.ArgumentParser) -> None:
    for m in MODULES:
        m.configure(p)
    p.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="sqlite")
    p.add_argument(
        "--workloads",
        default="",
        help="comma-separated subset of: "
        + ",".join(m.WORKLOAD.name for m in MODULES)
        + "; or 'all'. Default: all but the heavy "
        + ",".join(sorted(HEAVY))
        + " (a big room joined over federation: at its default size the set-up took"
        " 25 minutes a server kind on 2 busy cores)",
    )


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    wanted = {w for w in args.workloads.split(",") if w}
    if not wanted:
        wanted = {m.WORKLOAD.name for m in MODULES} - HEAVY
    elif "all" in wanted:
        wanted = {m.WORKLOAD.name for m in MODULES}
    workloads = [m.WORKLOAD for m in MODULES if m.WORKLOAD.name in wanted]
    runs: list[dict[str, Any]] = []
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    for engine in engines:
        print(f"== engine: {engine}", flush=True)
        if engine == "sqlite":
            harness.use_postgres("")
            runs.append(await harness.run_workloads(workloads, args, print_results=False))
        elif harness.PG_DSN or _env_dsn():
            harness.use_postgres(harness.PG_DSN or _env_dsn())
            runs.append(await harness.run_workloads(workloads, args, print_results=False))
        else:
            with harness.throwaway_postgres() as dsn:
                harness.use_postgres(dsn)
                runs.append(await harness.run_workloads(workloads, args, print_results=False))
        harness.use_postgres("")
        if args.json:  # after each engine: a long run stopped half-way keeps what it measured
            harness.write_json(args.json, {"runs": runs})
    harness.print_table(workloads, runs)
    if args.json:
        harness.write_json(args.json, {"runs": runs})
    return runs


def _env_dsn() -> str:
    import os

    return os.environ.get("MYELIN_BENCH_PG_DSN", "")


def main() -> None:
    p = argparse.ArgumentParser()
    harness.add_common_args(p)
    configure(p)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
