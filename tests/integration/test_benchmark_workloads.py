"""The benchmark workloads still run: every one of ``benchmarks.run_all``'s, at tiny sizes,
against Myelin alone, on the engine the suite runs on.

Why: benchmarks are not tests and nothing else runs them; without this they would rot
(an API change, a renamed field) unnoticed until the next measurement. Nothing here is
timed: the test checks that each workload did all of its work (every message sent, every
receiver woken, every remote PDU kept) and reported it.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import harness, run_all
from tests.conftest import ENGINE, PG_DSN

TINY = [
    "--no-synapse",
    "--logins", "2", "--login-concurrency", "1",
    "--rj-users", "2", "--rj-messages", "4",
    "--room-members", "3", "--senders", "2", "--sends", "3", "--concurrent-sends", "2",
    "--creates", "2", "--creators", "2",
    "--fanout-members", "2", "--fanout-rounds", "2",
    "--sync-rooms", "2", "--history", "2", "--initial-syncs", "1",
    "--incrementals", "2", "--wakeups", "2",
    "--ingest-pdus", "60", "--ingest-batch", "50",
    "--big-members", "4", "--big-sends", "1", "--big-repeats", "3",
    "--curve-sizes", "2,4", "--curve-sends", "1", "--curve-warmups", "1",
    "--remote-members", "3", "--remote-messages", "2",
]  # fmt: skip


async def test_every_workload_runs_to_completion_against_myelin() -> None:
    p = argparse.ArgumentParser()
    harness.add_common_args(p)
    run_all.configure(p)
    args = p.parse_args(TINY)
    workloads = [m.WORKLOAD for m in run_all.MODULES]
    harness.use_postgres(PG_DSN if ENGINE == "postgres" else "")
    try:
        results = await harness.run_workloads(workloads, args, print_results=False)
    finally:
        harness.use_postgres("")
    assert "synapse" not in results
    got: dict[str, Any] = results["myelin"]
    for w in workloads:
        assert "error" not in got[w.name], (w.name, got[w.name])
        assert got[w.name]["capped"] is False, w.name
        assert got[w.name]["rss_after"]["VmHWM"] >= got[w.name]["rss_after"]["VmRSS"] > 0
    assert got["login"]["latency"]["n"] == 2
    assert (got["rj"]["users"], got["rj"]["messages"]) == (2, 4)
    assert got["send"]["sequential"]["n"] == 3
    assert got["send"]["concurrent"]["n"] == got["send"]["rooms_concurrent"]["n"] == 4
    assert got["create"]["rooms"] == 2
    assert (got["fanout"]["rounds"], got["fanout"]["missed"]) == (2, 0)
    assert got["fanout"]["each_received"]["n"] == 4
    assert got["sync"]["rooms"] == 2
    assert got["sync"]["incremental"]["n"] == got["sync"]["wakeup"]["n"] == 2
    ingest = got["ingest"]
    assert (ingest["pdus_sent"], ingest["pdus_rejected"], ingest["kept"]) == (60, 0, 60)
    assert ingest["last_in_sync_s"] is not None
    assert got["bigroom"]["members"] == 4
    assert got["bigroom"]["lazy_sync_ms"]["n"] == 3
    remote = got["remotejoin"]  # a user of a second Myelin joins over federation
    assert (remote["remote_members"], remote["members_listed"]) == (3, 4)
    assert remote["room_in_sync"] is True and remote["history_read"] == 2
    assert remote["send_seen_on_resident_s"] is not None
    assert remote["joiner_peak_rss_mib"] > 0
    curves = got["curves"]
    assert sorted(int(size) for size in curves["sizes"]) == [2, 4]
    # At each size: the server left until quiet, and the warm-up send not measured.
    for size in curves["sizes"].values():
        assert size["settle_s"] >= 0 and size["send_ms"]["n"] == size["sync_ms"]["n"] == 1
    assert got["engine"] == ("postgresql" if ENGINE == "postgres" else "sqlite")
