"""Run every benchmark against Myelin and Synapse (one server process each) and print the
comparison table. Defaults are modest (a few minutes in all); every size has a flag.

    python -m benchmarks.run_all [--no-synapse] [--big-members 5000] [--json out.json]
    python -m benchmarks.run_all --curve-sizes 10,100,1000,10000   # issue 15's full curve
"""

from __future__ import annotations

import argparse

from benchmarks import bench_bigroom, bench_curves, bench_login, bench_send, bench_sync
from benchmarks.harness import main

MODULES = [bench_login, bench_send, bench_sync, bench_bigroom, bench_curves]


def configure(p: argparse.ArgumentParser) -> None:
    for m in MODULES:
        m.configure(p)


if __name__ == "__main__":
    main([m.WORKLOAD for m in MODULES], configure)
