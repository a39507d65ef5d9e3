"""The Log contract (docket/log/base.py), written once and subclassed per backend.

`LogContract` holds every test; a backend subclass says how to open its log in this process
and in a subprocess (eventsourcing's ``AggregateRecorderTestCase`` style). The embedded
SQLite log is `TestEmbeddedLog` below; a Kafka subclass adds ``open_log`` against a broker.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docket.errors import ConfigurationError, LogError, PartitionFencedError
from docket.log.base import GroupCommit, Log, OutRecord
from docket.log.embedded import EmbeddedLog, member_id
from docket.log.kafka import KafkaLog
from tests.kafka_broker import Broker

GROUP = "processor"
TOPIC = "docket.test.commands"
OTHER = "docket.test.history"

# A writer process for the race test. It gets a JSON spec, the code that opens the log
# (from the backend subclass), waits for the start signal so that all writers begin
# together, and appends ``batches`` transactions of 3 records to every partition, each
# together with its own consumer-group offset.
WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    from docket.log.base import OutRecord
    spec = json.loads(sys.argv[1])
    name, batches, go = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    exec(spec["open"])  # defines `log`
    while not os.path.exists(go):
        time.sleep(0.001)
    for i in range(batches):
        records = [OutRecord(spec["topic"], p, name, f"{name}:{i}:{j}".encode())
                   for p in range(spec["partitions"]) for j in range(3)]
        log.append(records, {("writer-" + name, spec["topic"], 0): i + 1})
    log.close()
    """
)

APPEND_ONE = textwrap.dedent(
    """
    import json, sys
    from docket.log.base import OutRecord
    spec = json.loads(sys.argv[1])
    exec(spec["open"])  # defines `log`
    log.append([OutRecord(spec["topic"], 0, "k", b"from another process")])
    log.close()
    """
)


def values(records: list[Any]) -> list[bytes]:
    return [r.value for r in records]


class LogContract:
    """Every backend must pass these. Subclasses implement `open_log` and `open_code`."""

    partitions = 3

    # -- what a backend subclass provides -------------------------------------------------

    def open_log(self, where: Path) -> Log:
        """A new handle on the log under test (several handles act like several processes)."""
        raise NotImplementedError

    def open_code(self, where: Path) -> str:
        """Python source that opens the same log in another process, as ``log = ...``."""
        raise NotImplementedError

    def member(self, name: str) -> str:
        """A group member id for ``name``."""
        return name

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture
    def where(self, tmp_path: Path) -> Path:
        return tmp_path / "log"

    @pytest.fixture
    def log(self, where: Path) -> Iterator[Log]:
        handle = self.open_log(where)
        yield handle
        handle.close()

    @pytest.fixture
    def other(self, where: Path, log: Log) -> Iterator[Log]:
        """A second handle on the same log, as another process would have."""
        handle = self.open_log(where)
        yield handle
        handle.close()

    def spec(self, where: Path) -> str:
        return json.dumps({"open": self.open_code(where), "topic": TOPIC, "partitions": self.partitions})

    # -- append, read, end offset -----------------------------------------------------------------

    def test_a_new_log_is_empty(self, log: Log) -> None:
        assert log.partitions == self.partitions
        for p in range(self.partitions):
            assert log.end_offset(TOPIC, p) == 0
            assert log.read(TOPIC, p, 0, 100) == []
            assert log.committed(GROUP, TOPIC, p) == 0

    def test_append_assigns_gap_free_offsets_per_partition(self, log: Log) -> None:
        log.append([OutRecord(TOPIC, 0, "a", b"a0"), OutRecord(TOPIC, 1, "b", b"b0"),
                    OutRecord(TOPIC, 0, "a", b"a1"), OutRecord(OTHER, 0, "a", b"h0")])
        log.append([OutRecord(TOPIC, 0, "c", b"a2"), OutRecord(TOPIC, 1, "d", b"b1")])
        assert [log.end_offset(TOPIC, p) for p in range(3)] == [3, 2, 0]
        assert log.end_offset(OTHER, 0) == 1
        records = log.read(TOPIC, 0, 0, 100)
        assert [(r.topic, r.partition, r.offset, r.key, r.value) for r in records] == [
            (TOPIC, 0, 0, "a", b"a0"), (TOPIC, 0, 1, "a", b"a1"), (TOPIC, 0, 2, "c", b"a2")]
        assert values(log.read(TOPIC, 1, 0, 100)) == [b"b0", b"b1"]
        assert values(log.read(OTHER, 0, 0, 100)) == [b"h0"]
        assert all(isinstance(r.ts_us, int) and r.ts_us > 1_600_000_000_000_000 for r in records)

    def test_read_from_an_offset_with_a_limit(self, log: Log) -> None:
        log.append([OutRecord(TOPIC, 2, str(i), str(i).encode()) for i in range(10)])
        assert values(log.read(TOPIC, 2, 3, 4)) == [b"3", b"4", b"5", b"6"]
        assert [r.offset for r in log.read(TOPIC, 2, 8, 100)] == [8, 9]
        assert log.read(TOPIC, 2, 10, 100) == []
        assert log.read(TOPIC, 2, 500, 100) == []

    def test_values_are_opaque_bytes(self, log: Log) -> None:
        blob = bytes(range(256)) * 40
        log.append([OutRecord(TOPIC, 0, "k\u00fc\u2713", blob), OutRecord(TOPIC, 0, "", b"")])
        first, second = log.read(TOPIC, 0, 0, 10)
        assert (first.key, first.value) == ("k\u00fc\u2713", blob)
        assert (second.key, second.value) == ("", b"")

    def test_appending_nothing_is_a_noop(self, log: Log) -> None:
        log.append([])
        log.append([], {})
        assert log.end_offset(TOPIC, 0) == 0

    def test_other_handles_see_appends(self, log: Log, other: Log) -> None:
        log.append([OutRecord(TOPIC, 0, "k", b"v")])
        assert other.end_offset(TOPIC, 0) == 1
        assert values(other.read(TOPIC, 0, 0, 10)) == [b"v"]
        other.append([OutRecord(TOPIC, 0, "k", b"w")])
        assert values(log.read(TOPIC, 0, 0, 10)) == [b"v", b"w"]

    def test_a_read_to_the_end_sees_what_another_handle_appended_before_it(
        self, log: Log, other: Log
    ) -> None:
        """Read-your-writes across processes: once an append has returned, a read that
        finds nothing means the partition really ends there, also for a handle that had
        already read to the end (on Kafka it knew of an end from its last fetch, and
        returned nothing until it fetched again: a client missed a workflow's close)."""
        offset = 0
        for i in range(20):
            commits = {(GROUP, TOPIC, 0): i + 1} if i % 2 else None  # a transaction on Kafka
            log.append([OutRecord(OTHER, 0, "k", str(i).encode())], commits)
            records = other.read(OTHER, 0, offset, 10)
            assert values(records) == [str(i).encode()], f"append {i} not seen"
            offset = records[-1].offset + 1
            assert other.read(OTHER, 0, offset, 10) == []  # the end: where the next read waits
        assert other.end_offset(OTHER, 0) >= offset

    def test_appends_survive_reopening(self, where: Path) -> None:
        first = self.open_log(where)
        first.append([OutRecord(TOPIC, 1, "k", b"durable")], {(GROUP, TOPIC, 1): 1})
        first.close()
        again = self.open_log(where)
        try:
            assert values(again.read(TOPIC, 1, 0, 10)) == [b"durable"]
            assert again.committed(GROUP, TOPIC, 1) == 1
        finally:
            again.close()

    def test_an_unsynced_append_is_committed_and_survives_reopening(
        self, where: Path, other: Log
    ) -> None:
        """``sync=False`` skips only the flush to disk (a client's requests): the records
        and offsets are committed, seen by other handles, and kept across a reopen."""
        first = self.open_log(where)
        first.append([OutRecord(TOPIC, 2, "k", b"request")], {(GROUP, TOPIC, 2): 1}, sync=False)
        first.append([OutRecord(TOPIC, 2, "k", b"answer")])  # a synced append after it
        assert values(other.read(TOPIC, 2, 0, 10)) == [b"request", b"answer"]
        first.close()
        again = self.open_log(where)
        try:
            assert values(again.read(TOPIC, 2, 0, 10)) == [b"request", b"answer"]
            assert again.committed(GROUP, TOPIC, 2) == 1
        finally:
            again.close()

    # -- atomic append + commit -------------------------------------------------------------------

    def test_append_and_commit_together(self, log: Log, other: Log) -> None:
        log.append([OutRecord(TOPIC, 0, "k", b"in0"), OutRecord(TOPIC, 0, "k", b"in1")])
        log.append([OutRecord(OTHER, 0, "k", b"out")], {(GROUP, TOPIC, 0): 2, (GROUP, TOPIC, 1): 0})
        assert other.committed(GROUP, TOPIC, 0) == 2
        assert other.committed(GROUP, TOPIC, 1) == 0
        assert other.committed("another-group", TOPIC, 0) == 0
        log.append([], {(GROUP, TOPIC, 0): 5})  # commits alone are fine too
        assert other.committed(GROUP, TOPIC, 0) == 5

    def test_a_fenced_append_writes_nothing(self, log: Log, other: Log) -> None:
        a, b = self.member("a"), self.member("b")
        assert log.acquire(GROUP, [0], a) == [0]
        log.append([OutRecord(TOPIC, 0, "k", b"before")], {(GROUP, TOPIC, 0): 1}, owner=a)
        with pytest.raises(PartitionFencedError) as fenced:
            other.append(
                [OutRecord(OTHER, 0, "k", b"x"), OutRecord(OTHER, 1, "k", b"y"),
                 OutRecord(TOPIC, 2, "k", b"z")],
                {(GROUP, TOPIC, 0): 7, (GROUP, TOPIC, 1): 7},
                owner=b,
            )
        assert "partition 0" in str(fenced.value) or "partition 1" in str(fenced.value)
        assert isinstance(fenced.value, LogError)
        for handle in (log, other):
            assert [handle.end_offset(OTHER, p) for p in range(3)] == [0, 0, 0]
            assert handle.end_offset(TOPIC, 2) == 0
            assert handle.committed(GROUP, TOPIC, 0) == 1
            assert handle.committed(GROUP, TOPIC, 1) == 0
        assert values(log.read(TOPIC, 0, 0, 10)) == [b"before"]

    def test_an_owner_without_any_lease_is_fenced(self, log: Log) -> None:
        with pytest.raises(PartitionFencedError, match=f"group '{GROUP}'"):
            log.append([OutRecord(TOPIC, 0, "k", b"x")], {(GROUP, TOPIC, 0): 1}, owner=self.member("a"))
        assert log.end_offset(TOPIC, 0) == 0

    def test_unfenced_appends_need_no_lease(self, log: Log, other: Log) -> None:
        """Clients append commands without owning anything; only commits are fenced."""
        assert log.acquire(GROUP, range(self.partitions), self.member("a"))
        other.append([OutRecord(TOPIC, 0, "k", b"signal")])
        other.append([OutRecord(TOPIC, 0, "k", b"signal")], None, owner=self.member("b"))
        assert log.end_offset(TOPIC, 0) == 2

    # -- leases and fencing -------------------------------------------------------------------------

    def test_leases_are_exclusive_until_released(self, log: Log, other: Log) -> None:
        a, b = self.member("a"), self.member("b")
        assert log.acquire(GROUP, [0, 1], a) == [0, 1]
        assert other.acquire(GROUP, [0, 1, 2], b) == [2]
        assert log.acquire(GROUP, [0, 1, 2], a) == [0, 1], "renewing keeps what a holds"
        log.release(GROUP, [1], a)
        assert other.acquire(GROUP, [0, 1], b) == [1]
        other.append([OutRecord(OTHER, 1, "k", b"b")], {(GROUP, TOPIC, 1): 3}, owner=b)
        with pytest.raises(PartitionFencedError):
            log.append([OutRecord(OTHER, 1, "k", b"a")], {(GROUP, TOPIC, 1): 9}, owner=a)
        assert values(log.read(OTHER, 1, 0, 10)) == [b"b"]
        assert log.committed(GROUP, TOPIC, 1) == 3

    def test_release_by_a_non_owner_changes_nothing(self, log: Log, other: Log) -> None:
        a, b = self.member("a"), self.member("b")
        assert log.acquire(GROUP, [0], a) == [0]
        other.release(GROUP, [0], b)
        assert other.acquire(GROUP, [0], b) == []

    def test_leases_are_per_group(self, log: Log, other: Log) -> None:
        a, b = self.member("a"), self.member("b")
        assert log.acquire("timers", [0], a) == [0]
        assert other.acquire(GROUP, [0], b) == [0]
        other.append([], {(GROUP, TOPIC, 0): 1}, owner=b)

    def test_leave_gives_up_every_lease(self, log: Log, other: Log) -> None:
        a, b = self.member("a"), self.member("b")
        log.heartbeat(GROUP, a)
        assert log.acquire(GROUP, range(self.partitions), a) == list(range(self.partitions))
        log.leave(GROUP, a)
        assert other.acquire(GROUP, range(self.partitions), b) == list(range(self.partitions))
        with pytest.raises(PartitionFencedError):
            log.append([], {(GROUP, TOPIC, 0): 1}, owner=a)

    # -- group assignment ---------------------------------------------------------------------------

    def test_group_assignment_splits_partitions_between_members(self, log: Log, other: Log) -> None:
        a, b = self.member("a"), self.member("b")
        everything = set(range(self.partitions))
        assert set(log.heartbeat(GROUP, a)) == everything
        assigned_b = set(other.heartbeat(GROUP, b))
        assigned_a = set(log.heartbeat(GROUP, a))
        assert assigned_a and assigned_b
        assert assigned_a | assigned_b == everything and not assigned_a & assigned_b
        assert set(other.heartbeat(GROUP, b)) == assigned_b, "assignment is stable"
        # the members take over their partitions, a first giving up what moved to b
        log.release(GROUP, everything - assigned_a, a)
        assert set(log.acquire(GROUP, sorted(assigned_a), a)) == assigned_a
        assert set(other.acquire(GROUP, sorted(assigned_b), b)) == assigned_b
        # b leaves: a is assigned everything again and can take it
        other.leave(GROUP, b)
        assert set(log.heartbeat(GROUP, a)) == everything
        assert set(log.acquire(GROUP, sorted(everything), a)) == everything

    def test_groups_are_independent(self, log: Log, other: Log) -> None:
        a, b = self.member("a"), self.member("b")
        log.heartbeat(GROUP, a)
        other.heartbeat("timers", b)
        assert set(log.heartbeat(GROUP, a)) == set(range(self.partitions))
        assert set(other.heartbeat("timers", b)) == set(range(self.partitions))

    # -- waiting for appends ------------------------------------------------------------------------

    async def test_wait_for_append_wakes_up_on_an_append_by_another_handle(self, log: Log, other: Log) -> None:
        token = log.change_token()
        waiter = asyncio.ensure_future(log.wait_for_append(token, 30.0))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        other.append([OutRecord(TOPIC, 0, "k", b"v")])
        await asyncio.wait_for(waiter, 5.0)  # well before the 30 s timeout

    async def test_wait_for_append_wakes_up_on_an_append_by_the_same_handle(self, log: Log) -> None:
        token = log.change_token()
        waiter = asyncio.ensure_future(log.wait_for_append(token, 30.0))
        await asyncio.sleep(0)
        log.append([OutRecord(TOPIC, 1, "k", b"v")])
        await asyncio.wait_for(waiter, 5.0)

    async def test_an_append_before_waiting_is_not_lost(self, log: Log, other: Log) -> None:
        token = log.change_token()  # taken before the read, as the processors do
        other.append([OutRecord(TOPIC, 0, "k", b"v")])
        await asyncio.wait_for(log.wait_for_append(token, 30.0), 5.0)

    async def test_waits_that_time_out_leave_nothing_behind(self, log: Log) -> None:
        """An idle engine's pollers time out every few milliseconds, for days: each wait's
        future must go when it ends, not stay until this process appends something."""

        def futures() -> int:
            gc.collect()
            return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.Future))

        await log.wait_for_append(log.change_token(), 0.001)
        before = futures()
        for _ in range(100):
            await log.wait_for_append(log.change_token(), 0.001)
        assert futures() - before < 10

    async def test_wait_for_append_times_out_without_appends(self, log: Log) -> None:
        await asyncio.wait_for(log.wait_for_append(log.change_token(), 0.05), 5.0)

    async def test_wait_for_append_wakes_up_on_an_append_by_another_process(self, log: Log, where: Path) -> None:
        token = log.change_token()
        waiter = asyncio.ensure_future(log.wait_for_append(token, 60.0))
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", APPEND_ONE, self.spec(where))
        assert await asyncio.wait_for(proc.wait(), 30.0) == 0
        await asyncio.wait_for(waiter, 10.0)
        assert values(log.read(TOPIC, 0, 0, 10)) == [b"from another process"]

    async def test_group_commit_coalesces_one_tick_into_one_transaction(self, log: Log) -> None:
        writer = GroupCommit(log)
        futures = [writer.append([OutRecord(TOPIC, i % 2, "k", str(i).encode())]) for i in range(6)]
        await asyncio.gather(*futures)
        assert values(log.read(TOPIC, 0, 0, 10)) == [b"0", b"2", b"4"]
        assert values(log.read(TOPIC, 1, 0, 10)) == [b"1", b"3", b"5"]
        # all six came back with one timestamp: they were one append
        assert len({r.ts_us for p in (0, 1) for r in log.read(TOPIC, p, 0, 10)}) == 1

    # -- concurrent writers in separate processes ---------------------------------------------------

    @pytest.mark.slow
    def test_concurrent_writer_processes_get_gap_free_non_interleaved_offsets(
        self, log: Log, where: Path, tmp_path: Path
    ) -> None:
        writers, batches = ["w1", "w2", "w3"], 60
        go = tmp_path / "go"
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, self.spec(where), name, str(batches), str(go)])
                 for name in writers]
        try:
            go.touch()
            while any(p.poll() is None for p in procs):
                # a reader racing the writers never sees a gap or a half-written batch
                seen = log.read(TOPIC, 0, 0, 100_000)
                assert [r.offset for r in seen] == list(range(len(seen)))
                assert len(seen) % 3 == 0
                try:
                    procs[0].wait(timeout=0.02)
                except subprocess.TimeoutExpired:
                    pass
            assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        switches = 0
        for partition in range(self.partitions):
            records = log.read(TOPIC, partition, 0, 100_000)
            assert log.end_offset(TOPIC, partition) == len(records) == len(writers) * batches * 3
            assert [r.offset for r in records] == list(range(len(records))), "offsets are gap-free"
            # each append's 3 records are contiguous, and each writer's batches are in its order
            chunks = [records[i:i + 3] for i in range(0, len(records), 3)]
            order: dict[str, list[int]] = {name: [] for name in writers}
            for chunk in chunks:
                names = {r.key for r in chunk}
                assert len(names) == 1, f"an append was interleaved: {[r.value for r in chunk]}"
                batch = [tuple(r.value.decode().split(":")) for r in chunk]
                (name,) = names
                assert [j for _, _, j in batch] == ["0", "1", "2"]
                assert len({i for _, i, _ in batch}) == 1
                order[name].append(int(batch[0][1]))
            assert order == {name: list(range(batches)) for name in writers}
            switches += sum(1 for x, y in zip(chunks, chunks[1:], strict=False) if x[0].key != y[0].key)
        for name in writers:
            assert log.committed(f"writer-{name}", TOPIC, 0) == batches
        assert switches > 0, "the writers never overlapped: the race was not exercised"


class TestEmbeddedLog(LogContract):
    def open_log(self, where: Path) -> Log:
        return EmbeddedLog(where, namespace="test", partitions=self.partitions)

    def open_code(self, where: Path) -> str:
        return (f"from docket.log.embedded import EmbeddedLog\n"
                f"log = EmbeddedLog({str(where)!r}, namespace='test', partitions={self.partitions})")

    def member(self, name: str) -> str:
        return member_id(name)  # role@host:pid:random, as the engine names its members

    # -- embedded-only behaviour --------------------------------------------------------------------

    def test_every_other_append_stays_fsynced(self, log: Log) -> None:
        """An unsynced append (and a failed one) puts synchronous=FULL back for the rest."""
        assert isinstance(log, EmbeddedLog)
        full = 2
        log.append([OutRecord(TOPIC, 0, "k", b"request")], sync=False)
        assert log._db.execute("PRAGMA synchronous").fetchone()[0] == full
        with pytest.raises(LogError):
            log.append([OutRecord(TOPIC, 1, "k", None)], sync=False)  # type: ignore[arg-type]
        assert log._db.execute("PRAGMA synchronous").fetchone()[0] == full

    def test_a_failing_append_rolls_back_everything(self, log: Log, where: Path) -> None:
        log.append([OutRecord(TOPIC, 0, "k", b"kept")])
        bad = OutRecord(TOPIC, 1, "k", None)  # type: ignore[arg-type]  # NOT NULL violation
        with pytest.raises(LogError, match=str(where)):
            log.append([OutRecord(TOPIC, 0, "k", b"lost"), OutRecord(OTHER, 0, "k", b"lost"), bad],
                       {(GROUP, TOPIC, 0): 1})
        assert values(log.read(TOPIC, 0, 0, 10)) == [b"kept"]
        assert log.end_offset(OTHER, 0) == 0 and log.end_offset(TOPIC, 1) == 0
        assert log.committed(GROUP, TOPIC, 0) == 0
        log.append([OutRecord(TOPIC, 0, "k", b"next")])  # the log is still usable
        assert [r.offset for r in log.read(TOPIC, 0, 0, 10)] == [0, 1]

    def test_partition_count_is_fixed_when_the_namespace_is_created(self, where: Path) -> None:
        first = EmbeddedLog(where, namespace="fixed", partitions=5)
        again = EmbeddedLog(where, namespace="fixed", partitions=2)
        other_ns = EmbeddedLog(where, namespace="other", partitions=2)
        try:
            assert (first.partitions, again.partitions, other_ns.partitions) == (5, 5, 2)
        finally:
            for handle in (first, again, other_ns):
                handle.close()

    def test_opening_a_missing_data_dir_without_create_is_a_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="no Docket data at .*log.sqlite3"):
            EmbeddedLog(tmp_path / "nowhere", namespace="test", partitions=1, create=False)
        assert not (tmp_path / "nowhere").exists()

    def test_leases_of_a_dead_process_are_taken_over_at_once(self, log: Log, other: Log) -> None:
        proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        dead = member_id("processor").rsplit(":", 2)
        dead_member = f"{dead[0]}:{proc.stdout.strip()}:{dead[2]}"
        assert log.acquire(GROUP, [0, 1], dead_member) == [0, 1]
        log.heartbeat(GROUP, dead_member)
        alive = self.member("b")
        assert other.acquire(GROUP, [0, 1], alive) == [0, 1]
        assert set(other.heartbeat(GROUP, alive)) == set(range(self.partitions)), "dead member dropped"

    def test_any_string_is_a_valid_member_id(self, log: Log, other: Log) -> None:
        assert log.acquire(GROUP, [0], "member-a") == [0]
        assert other.acquire(GROUP, [0], "member-b") == []
        log.heartbeat(GROUP, "member-a")
        assert other.heartbeat(GROUP, "member-b")


class TestKafkaLog(LogContract):
    """The same contract on Kafka, against a real Kafka-protocol broker (Tansu) started per
    test. Where Kafka's group protocol differs from explicit leases (partitions move when
    Kafka rebalances, not when a member releases them; transactions interleave on a
    partition and their markers take offsets), the test says so and checks the Kafka form."""

    SESSION_MS = 1000  # fast joins and hand-overs in tests (Tansu joins in about session/2)

    @pytest.fixture(autouse=True)
    def broker(self, tmp_path: Path) -> Iterator[Broker]:
        running = Broker(tmp_path).start()
        self.bootstrap = running.bootstrap
        yield running
        running.stop()

    def open_log(self, where: Path) -> Log:
        return KafkaLog(self.bootstrap, namespace="test", partitions=self.partitions,
                        session_timeout_ms=self.SESSION_MS)

    def open_code(self, where: Path) -> str:
        return (f"from docket.log.kafka import KafkaLog\n"
                f"log = KafkaLog({self.bootstrap!r}, namespace='test', partitions={self.partitions},"
                f" session_timeout_ms={self.SESSION_MS})")

    def test_appends_without_transactions_store_records_and_offsets(self) -> None:
        """DOCKET_KAFKA_TRANSACTIONS=false (brokers without transactions): the same
        contract for a completed append, the records first and then the offsets."""
        log = KafkaLog(self.bootstrap, namespace="test", partitions=self.partitions,
                       session_timeout_ms=self.SESSION_MS, config={"transactions": "false"})
        try:
            member = self.member("a")
            assert log.acquire(GROUP, [0], member) == [0]
            log.append([OutRecord(OTHER, 0, "k", b"1"), OutRecord(OTHER, 0, "k", b"2")],
                       {(GROUP, TOPIC, 0): 5}, owner=member)
            assert values(log.read(OTHER, 0, 0, 10)) == [b"1", b"2"]
            assert log.committed(GROUP, TOPIC, 0) == 5
            assert log._txn_producer is None  # no transaction was even set up
        finally:
            log.close()

    def test_fetch_wait_is_a_reader_setting(self) -> None:
        """DOCKET_KAFKA_FETCH_WAIT_MAX_MS reaches the readers only (producers would warn)."""
        log = KafkaLog(self.bootstrap, namespace="test", partitions=self.partitions,
                       config={"fetch.wait.max.ms": "50"})
        try:
            assert log._fetch_wait_ms == 50 and "fetch.wait.max.ms" not in log._conf
            log.append([OutRecord(OTHER, 0, "k", b"1")])
            assert values(log.read(OTHER, 0, 0, 10)) == [b"1"]
        finally:
            log.close()

    # -- where Kafka's group protocol is not explicit leases -------------------------------------

    def test_release_by_a_non_owner_changes_nothing(self, log: Log, other: Log) -> None:
        """Kafka form: releasing is the group's business (a no-op call); whatever the
        cooperative rebalance moves to the newcomer, the old member has given up first."""
        a, b = self.member("a"), self.member("b")
        assert log.acquire(GROUP, [0, 1, 2], a) == [0, 1, 2]
        other.release(GROUP, [0, 1, 2], b)
        held_b = other.acquire(GROUP, [0, 1, 2], b)
        assert not set(log.acquire(GROUP, [0, 1, 2], a)) & set(held_b)

    def test_leases_are_exclusive_until_released(self, log: Log, other: Log) -> None:
        """Kafka form: partitions are split between members by the group, each held by one
        member; the member that lost a partition to a newcomer is fenced on it."""
        a, b = self.member("a"), self.member("b")
        assert log.acquire(GROUP, [0, 1, 2], a) == [0, 1, 2]  # alone: everything
        held_b = other.acquire(GROUP, [0, 1, 2], b)  # b joins: the group rebalances
        held_a = log.acquire(GROUP, [0, 1, 2], a)
        assert held_a and held_b and not set(held_a) & set(held_b)
        assert set(held_a) | set(held_b) == {0, 1, 2}
        moved = held_b[0]
        other.append([OutRecord(OTHER, moved, "k", b"b")], {(GROUP, TOPIC, moved): 3}, owner=b)
        with pytest.raises(PartitionFencedError):
            log.append([OutRecord(OTHER, moved, "k", b"a")], {(GROUP, TOPIC, moved): 9}, owner=a)
        assert values(log.read(OTHER, moved, 0, 10)) == [b"b"]
        assert log.committed(GROUP, TOPIC, moved) == 3

    def test_group_assignment_splits_partitions_between_members(self, log: Log, other: Log) -> None:
        """Kafka form: the split is Kafka's, and after a member leaves the others learn it at
        their next group heartbeat (a fraction of the session timeout), not at once."""
        a, b = self.member("a"), self.member("b")
        everything = set(range(self.partitions))
        assert set(log.heartbeat(GROUP, a)) == everything
        assigned_b = set(other.heartbeat(GROUP, b))
        assigned_a = set(log.heartbeat(GROUP, a))
        assert assigned_a and assigned_b
        assert assigned_a | assigned_b == everything and not assigned_a & assigned_b
        assert set(other.acquire(GROUP, sorted(assigned_b), b)) == assigned_b
        other.leave(GROUP, b)
        deadline = time.monotonic() + 10
        while set(log.heartbeat(GROUP, a)) != everything and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(log.acquire(GROUP, sorted(everything), a)) == everything

    @pytest.mark.slow
    def test_concurrent_writer_processes_get_gap_free_non_interleaved_offsets(
        self, log: Log, where: Path, tmp_path: Path
    ) -> None:
        """Kafka form: concurrent transactions interleave on a partition and their commit
        markers take offsets, so offsets only increase; every record arrives once, in each
        writer's order, and every writer's offset is committed."""
        writers, batches = ["w1", "w2"], 20
        go = tmp_path / "go"
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, self.spec(where), name, str(batches), str(go)])
                 for name in writers]
        try:
            go.touch()
            assert [p.wait(timeout=120) for p in procs] == [0, 0]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for partition in range(self.partitions):
            records = log.read(TOPIC, partition, 0, 100_000)
            offsets = [r.offset for r in records]
            assert offsets == sorted(set(offsets)), "offsets increase"
            for name in writers:
                mine = [r.value.decode() for r in records if r.key == name]
                assert mine == [f"{name}:{i}:{j}" for i in range(batches) for j in range(3)]
        for name in writers:
            assert log.committed(f"writer-{name}", TOPIC, 0) == batches
