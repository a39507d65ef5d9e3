"""Property test of the fold, driven through the real ExecutionProcessor (STYLE.md 4.9, habit 4).

A Hypothesis state machine plays clients, workers and the timer service: it appends random
commands (starts, step completions / failures / heartbeats for live and stale attempts, timer
fires, watches, duplicates) to a real EmbeddedLog in a temporary directory, advances a
manual clock, polls the processor, restarts it, and rebuilds its RocksDB state from the log.

Invariants:
- the state in the store equals folding that workflow's history, from the log, from scratch;
- every run's event ids are 1..n without gaps, and the store holds exactly the log's events;
- a duplicate of an already-processed start / completion / failure / timer records nothing;
- an invalid command (unknown workflow type) records nothing and is answered with a rejection;
- state rebuilt from the history topic alone equals the live state;
- re-processing the same commands from scratch (in a fresh log, with every activation replayed
  from history, no cache) yields byte-identical history, tasks, timers and replies.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import docket
from docket.codec.payload import to_payload
from docket.codec.records import COMMANDS, EVENTS, REPLIES, STATES, TIMERS
from docket.errors import StepError
from docket.execution.fold import apply
from docket.execution.ids import idempotency_key, run_id_for
from docket.log.base import OutRecord
from docket.log.embedded import EmbeddedLog, member_id
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics
from docket.streams.execution import ROLE, ExecutionProcessor

PARTITIONS = 1  # the fold is per workflow; one partition keeps each example cheap (RocksDB opens)
TOPICS = Topics("prop")
T0 = 1_700_000_000_000_000
WIDS = ("wf-a", "wf-b", "wf-c")
ITEMS = ("step", "sleep", "pair", "race", "side", "fail", "emit")
EMITTED = "prop-events"  # a user topic the workflows emit to
POLICIES = ("allow_after_close", "reject_duplicate", "return_existing")
# fsync-free scratch space when the machine has it: this test is about logic, not durability
FAST_TMP = "/dev/shm" if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
NOOP_WHEN_DUPLICATED = frozenset({"StartWorkflow", "CompleteStep", "FailStep", "FireTimer"})

MOSTLY = st.sampled_from([True, True, True, False])

app = docket.App("fold-property")


@app.step(name="work", retry=docket.RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3),
          start_to_close_timeout=timedelta(seconds=30), heartbeat_timeout=timedelta(seconds=5),
          schedule_to_close_timeout=timedelta(seconds=60), schedule_to_start_timeout=timedelta(seconds=10))
def work(i: int) -> int:
    raise AssertionError("steps are reported by the test, never run")


@app.workflow
async def flow(ctx: docket.WorkflowContext, plan: list[str]) -> list[Any]:
    out: list[Any] = []
    for i, item in enumerate(plan):
        try:
            if item == "step":
                out.append(await ctx.step(work, i))
            elif item == "sleep":
                await ctx.sleep(1 + i)
                out.append("slept")
            elif item == "pair":
                out.append(list(await asyncio.gather(ctx.step(work, i), ctx.step(work, 100 + i))))
            elif item == "race":
                step = asyncio.ensure_future(ctx.step(work, i))
                nap = asyncio.ensure_future(ctx.sleep(2))
                done, pending = await asyncio.wait({step, nap}, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                out.append("step" if step in done else "timer")
            elif item == "side":
                out.append(await ctx.side_effect(lambda i=i: i * 7))  # type: ignore[misc]
            elif item == "fail":
                raise docket.ApplicationError(f"plan item {i} fails the run", type="PlanFailed")
            elif item == "emit":
                out.append(ctx.emit(EMITTED, {"i": i, "at": ctx.now().isoformat()}, key=f"k{i}"))
        except StepError:
            out.append("step failed")
    return out


class ManualClock:
    def __init__(self, now_us: int) -> None:
        self.now = now_us

    def now_us(self) -> int:
        return self.now

    async def sleep_until(self, deadline_us: int, wake: asyncio.Event) -> None:
        await wake.wait()


def failure(type_name: str, non_retryable: bool) -> dict[str, Any]:
    return {"type": type_name, "message": f"{type_name} in test", "stack": "", "non_retryable": non_retryable,
            "details": None, "kind": "application", "cause": None}


def read_all(log: EmbeddedLog, topic: str) -> dict[int, list[bytes]]:
    return {p: [r.value for r in log.read(topic, p, 0, 1_000_000)] for p in range(PARTITIONS)}


def output_topics(log: EmbeddedLog) -> dict[str, dict[int, list[bytes]]]:
    return {t: read_all(log, t) for t in (TOPICS.history, TOPICS.timers, TOPICS.tasks("default"), TOPICS.replies,
                                          EMITTED)}


class Harness:
    """One log and one processor over it, in a directory of their own."""

    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop, *, cache_size: int) -> None:
        self.root = root
        self.loop = loop
        self.cache_size = cache_size
        self.clock = ManualClock(T0)
        self.log = EmbeddedLog(root, namespace="prop", partitions=PARTITIONS)
        self.state_dir = root / "state"
        self.processor = self.open_processor(self.state_dir)

    def open_processor(self, state_dir: Path) -> ExecutionProcessor:
        processor = ExecutionProcessor(app, self.log, TOPICS, state_dir, self.clock, member_id("processor"),
                                       cache_size=self.cache_size)
        self.loop.run_until_complete(processor.group.sync())
        assert set(processor.partitions) == set(range(PARTITIONS))
        return processor

    def append(self, partition: int, key: str, value: bytes) -> None:
        self.log.append([OutRecord(TOPICS.commands, partition, key, value)])

    def poll(self, now_us: int) -> None:
        self.clock.now = now_us
        while self.loop.run_until_complete(self.processor.poll_once()):
            pass

    def restart(self, state_dir: Path | None = None) -> None:
        self.processor.close()
        self.processor = self.open_processor(state_dir or self.state_dir)

    def close(self) -> None:
        self.processor.close()
        self.log.close()


class ProcessorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="docket-fold-", dir=FAST_TMP))
        self.loop = asyncio.new_event_loop()
        self.live = Harness(self.root / "live", self.loop, cache_size=100)
        self.now = T0
        self.script: list[tuple[str, Any]] = []  # what to re-do from scratch at the end
        self.counter = 0
        self.processed: list[tuple[str, int, bytes, str]] = []  # (wid, partition, command, kind)
        self.fired: set[str] = set()  # timer ids the "timer service" fired

    # -- helpers ----------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def _append(self, workflow_id: str, value: bytes) -> None:
        partition = partition_of(workflow_id, PARTITIONS)
        self.live.append(partition, workflow_id, value)
        self.script.append(("append", (partition, workflow_id, value)))
        kind = COMMANDS.decode(value)["body"][0]
        self.processed.append((workflow_id, partition, value, kind))

    def _command(self, workflow_id: str, command_id: str, kind: str, body: dict[str, Any]) -> None:
        self._append(workflow_id, COMMANDS.encode({"command_id": command_id, "workflow_id": workflow_id,
                                                   "ts_us": self.now, "body": (kind, body)}))

    def _poll(self) -> None:
        self.live.poll(self.now)
        self.script.append(("poll", self.now))

    def _state(self, workflow_id: str) -> dict[str, Any] | None:
        part = self.live.processor.partitions[partition_of(workflow_id, PARTITIONS)]
        raw = part.store.execution(workflow_id)
        return STATES.decode(raw) if raw else None

    def _history(self) -> dict[str, list[dict[str, Any]]]:
        """Every workflow's events, in log order."""
        events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for values in read_all(self.live.log, TOPICS.history).values():
            for value in values:
                event = EVENTS.decode(value)
                events[event["workflow_id"]].append(event)
        return events

    def _history_count(self) -> int:
        return sum(self.live.log.end_offset(TOPICS.history, p) for p in range(PARTITIONS))

    def _runs(self, workflow_id: str) -> list[str]:
        return [e["run_id"] for e in self._history().get(workflow_id, []) if e["body"][0] == "WorkflowStarted"]

    def _live_steps(self) -> list[tuple[str, str, int, int]]:
        found = []
        for wid in WIDS:
            state = self._state(wid)
            if state is None or state["status"] != "running":
                continue
            for step in state["steps"].values():
                if not step["local"]:
                    found.append((wid, state["run_id"], step["seq"], step["attempt"]))
        return sorted(found)

    def _stale_target(self, data: st.DataObject) -> tuple[str, str, int, int]:
        """A (workflow, run, seq, attempt) that is not, and never will be, a live attempt."""
        wid = data.draw(st.sampled_from(WIDS))
        runs = self._runs(wid)
        current = self._state(wid)
        how = data.draw(st.sampled_from(["bogus run", "old run", "unknown seq", "attempt 0", "old attempt"]))
        if how == "old run" and len(runs) > 1:
            return wid, data.draw(st.sampled_from(runs[:-1])), data.draw(st.integers(1, 6)), 1
        if how == "old attempt" and current and any(s["attempt"] > 1 for s in current["steps"].values()):
            step = data.draw(st.sampled_from([s for s in current["steps"].values() if s["attempt"] > 1]))
            return wid, current["run_id"], step["seq"], step["attempt"] - 1
        run_id = current["run_id"] if current and how != "bogus run" else "run-bogus"
        if how == "attempt 0":
            return wid, run_id, data.draw(st.integers(1, 6)), 0
        return wid, run_id, data.draw(st.integers(50, 60)), 1

    # -- rules: what clients, workers and the timer service do ---------------------------------------

    @initialize(plans=st.lists(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=4),
                               min_size=len(WIDS), max_size=len(WIDS)))
    def start_every_workflow(self, plans: list[list[str]]) -> None:
        for wid, plan in zip(WIDS, plans, strict=True):
            self._command(wid, self._next_id("start"), "StartWorkflow", {
                "workflow_type": "flow", "args": [to_payload(plan)], "kwargs": {}, "task_queue": "default",
                "id_reuse_policy": "allow_after_close", "reply_to": "client-1"})
        self._poll()

    @rule(wid=st.sampled_from(WIDS), plan=st.lists(st.sampled_from(ITEMS), max_size=4),
          policy=st.sampled_from(POLICIES), reply=st.booleans(), then_poll=MOSTLY)
    def start(self, wid: str, plan: list[str], policy: str, reply: bool, then_poll: bool) -> None:
        self._command(wid, self._next_id("start"), "StartWorkflow", {
            "workflow_type": "flow", "args": [to_payload(plan)], "kwargs": {}, "task_queue": "default",
            "id_reuse_policy": policy, "reply_to": "client-1" if reply else None})
        if then_poll:
            self._poll()

    @rule(data=st.data(), outcome=st.sampled_from(["complete", "fail", "fail for good", "heartbeat"]),
          live=MOSTLY, then_poll=MOSTLY)
    def step_report(self, data: st.DataObject, outcome: str, live: bool, then_poll: bool) -> None:
        targets = self._live_steps()
        if live and targets:
            wid, run_id, seq, attempt = data.draw(st.sampled_from(targets))
        else:
            wid, run_id, seq, attempt = self._stale_target(data)
        base = {"run_id": run_id, "seq": seq, "attempt": attempt}
        key = idempotency_key(wid, run_id, seq, attempt)
        if outcome == "complete":
            self._command(wid, f"CompleteStep:{key}", "CompleteStep",
                          {**base, "result": to_payload(data.draw(st.integers(-5, 5)))})
        elif outcome == "heartbeat":
            self._command(wid, self._next_id("hb"), "HeartbeatStep",
                          {**base, "details": data.draw(st.none() | st.just(to_payload({"at": seq})))})
        else:
            self._command(wid, f"FailStep:{key}", "FailStep",
                          {**base, "failure": failure("ValueError", outcome == "fail for good")})
        if then_poll:
            self._poll()

    def _timer_requests(self) -> list[dict[str, Any]]:
        """Timer requests on the timers topic (cancel records only make the service forget;
        a cancelled timer may still fire here, as a fire racing its cancel would)."""
        records = [TIMERS.decode(v) for values in read_all(self.live.log, TOPICS.timers).values() for v in values]
        return [r for r in records if not r["cancel"]]

    @rule(data=st.data(), requested=MOSTLY, then_poll=MOSTLY)
    def fire_timer(self, data: st.DataObject, requested: bool, then_poll: bool) -> None:
        """What the timer service does when a requested timer comes due."""
        requests = self._timer_requests()
        unfired = [r for r in requests if r["timer_id"] not in self.fired]
        if requested and (unfired or requests):
            # mostly timers that have not fired yet, as the timer service would
            request = data.draw(st.sampled_from(unfired if unfired and data.draw(MOSTLY) else requests))
            self.fired.add(request["timer_id"])
            self.now = max(self.now, request["fire_at_us"])
            self._append(request["workflow_id"], request["command"])
        else:
            wid, run_id, seq, attempt = self._stale_target(data)
            kind = data.draw(st.sampled_from(["sleep", "retry", "start_to_close", "heartbeat",
                                              "schedule_to_close", "schedule_to_start"]))
            self._command(wid, self._next_id("timer"), "FireTimer", {
                "run_id": run_id, "kind": kind, "seq": seq, "attempt": attempt, "fire_at_us": self.now})
        if then_poll:
            self._poll()

    @rule(data=st.data())
    def worker_round(self, data: st.DataObject) -> None:
        """A worker reports on every live attempt: mostly results, some failures and heartbeats."""
        for wid, run_id, seq, attempt in self._live_steps():
            outcome = data.draw(st.sampled_from(
                ["complete", "complete", "complete", "fail", "fail for good", "heartbeat", "heartbeat", "skip"]))
            base = {"run_id": run_id, "seq": seq, "attempt": attempt}
            key = idempotency_key(wid, run_id, seq, attempt)
            if outcome == "complete":
                self._command(wid, f"CompleteStep:{key}", "CompleteStep", {**base, "result": to_payload(seq)})
            elif outcome.startswith("fail"):
                self._command(wid, f"FailStep:{key}", "FailStep",
                              {**base, "failure": failure("OSError", outcome == "fail for good")})
            elif outcome == "heartbeat":
                self._command(wid, self._next_id("hb"), "HeartbeatStep", {**base, "details": None})
        self._poll()

    @rule(seconds=st.integers(0, 8))
    def timer_service_round(self, seconds: int) -> None:
        """Time passes; every requested timer now due fires, earliest first."""
        self.now += seconds * 1_000_000
        requests = self._timer_requests()
        for request in sorted(requests, key=lambda r: (r["fire_at_us"], r["timer_id"])):
            if request["timer_id"] not in self.fired and request["fire_at_us"] <= self.now:
                self.fired.add(request["timer_id"])
                self._append(request["workflow_id"], request["command"])
        self._poll()

    @rule(wid=st.sampled_from(WIDS), which=st.sampled_from(["latest", "current", "bogus"]))
    def watch(self, wid: str, which: str) -> None:
        state = self._state(wid)
        run_id = None if which == "latest" else (state["run_id"] if state and which == "current" else "run-bogus")
        self._command(wid, self._next_id("watch"), "WatchWorkflow", {"run_id": run_id, "reply_to": "watcher-1"})

    @rule(seconds=st.integers(0, 10))
    def advance_clock(self, seconds: int) -> None:
        self.now += seconds * 1_000_000

    @rule()
    def poll(self) -> None:
        self._poll()

    @rule()
    def restart(self) -> None:
        """A new processor on the same state: caches gone, state restored from the checkpoint."""
        self._poll()
        self.live.restart()

    @rule()
    def rebuild(self) -> None:
        """The state store is lost: a new processor rebuilds it from the history topic alone."""
        self._poll()
        self.live.processor.close()
        shutil.rmtree(self.live.state_dir)
        self.live.processor = self.live.open_processor(self.live.state_dir)

    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """At-least-once delivery: an already-processed command arrives again."""
        self._poll()
        candidates = [c for c in self.processed if c[3] in NOOP_WHEN_DUPLICATED and self._duplicable(c)]
        if not candidates:
            return
        wid, _, value, kind = data.draw(st.sampled_from(candidates))
        before = self._history_count()
        self._append(wid, value)
        self._poll()
        assert self._history_count() == before, f"a duplicate {kind} recorded events"

    def _duplicable(self, candidate: tuple[str, int, bytes, str]) -> bool:
        wid, _, value, kind = candidate
        if kind != "StartWorkflow":
            return True
        # Only the start of the current run: a re-delivered start of an older run, or of one that
        # was refused, is not deduplicated (see test_fold.py::test_redelivered_start_of_an_older_run_...).
        state = self._state(wid)
        return state is not None and run_id_for(COMMANDS.decode(value)["command_id"]) == state["run_id"]

    @rule(reply=st.booleans())
    def start_unknown_workflow(self, reply: bool) -> None:
        """An invalid command records nothing and, if it asked for one, gets a refusal."""
        self._poll()
        before = self._history_count()
        wid = WIDS[self.counter % len(WIDS)]
        command_id = self._next_id("bad-start")
        self._command(wid, command_id, "StartWorkflow", {
            "workflow_type": "no-such-workflow", "args": [], "kwargs": {}, "task_queue": "default",
            "id_reuse_policy": "allow_after_close", "reply_to": "client-bad" if reply else None})
        self._poll()
        assert self._history_count() == before
        answers = [r for vs in read_all(self.live.log, TOPICS.replies).values()
                   for r in map(REPLIES.decode, vs) if r["request_id"] == command_id]
        if not reply:
            assert answers == []
            return
        (answer,) = answers
        state = self._state(wid)
        if state is not None and state["status"] == "running":
            assert answer["kind"] == "already_started"  # the ID-reuse policy is checked first
        else:
            assert answer["kind"] == "rejected"
            assert "unknown workflow type 'no-such-workflow'" in answer["failure"]["message"]

    # -- invariants ------------------------------------------------------------------------------------

    @invariant()
    def store_equals_fold_of_the_log(self) -> None:
        history = self._history()
        for wid in WIDS:
            events = history.get(wid, [])
            folded: dict[str, Any] | None = None
            per_run: dict[str, list[int]] = defaultdict(list)
            for event in events:
                folded = apply(folded, event)
                per_run[event["run_id"]].append(event["event_id"])
            assert self._state(wid) == folded, f"state of {wid} differs from its folded history"
            cached = self.live.processor._states.get(wid)
            assert cached is None or cached == folded
            part = self.live.processor.partitions[partition_of(wid, PARTITIONS)]
            for run_id, ids in per_run.items():
                assert ids == list(range(1, len(ids) + 1)), f"event ids of run {run_id}: {ids}"
                stored = [EVENTS.decode(v) for v in part.store.history(wid, run_id)]
                assert stored == [e for e in events if e["run_id"] == run_id]

    @invariant()
    def emitted_records_match_history(self) -> None:
        """A record is in the user topic exactly when its RecordEmitted is in history: once."""
        recorded = sorted(
            f"{e['workflow_id']}/{e['run_id']}/{e['body'][1]['seq']}"
            for events in self._history().values() for e in events if e["body"][0] == "RecordEmitted")
        ids = sorted(dict(r.headers)["docket-record-id"].decode()
                     for p in range(PARTITIONS) for r in self.live.log.read(EMITTED, p, 0, 1_000_000))
        assert ids == recorded

    @invariant()
    def checkpoints_follow_the_log(self) -> None:
        log = self.live.log
        for p, part in self.live.processor.partitions.items():
            assert part.store.checkpoint() == log.end_offset(TOPICS.history, p) == part.history_end
            assert log.committed(TOPICS.group(ROLE), TOPICS.commands, p) == part.offset

    # -- at the end: rebuild and re-process -------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self._poll()
            self.store_equals_fold_of_the_log()
            self._check_rebuild_from_the_log()
            self._check_reprocessing_is_byte_identical()
        finally:
            self.live.close()
            self.loop.close()
            shutil.rmtree(self.root, ignore_errors=True)

    def _check_rebuild_from_the_log(self) -> None:
        live = {wid: self._state(wid) for wid in WIDS}
        self.live.restart(self.root / "rebuilt")  # an empty state directory: all from the log
        assert {wid: self._state(wid) for wid in WIDS} == live
        self.store_equals_fold_of_the_log()

    def _check_reprocessing_is_byte_identical(self) -> None:
        again = Harness(self.root / "again", self.loop, cache_size=0)
        try:
            for action, arg in self.script:
                if action == "append":
                    again.append(*arg)
                else:
                    again.poll(arg)
            expected = output_topics(self.live.log)
            got = output_topics(again.log)
            for topic in expected:
                assert got[topic] == expected[topic], f"re-processing changed {topic}"
        finally:
            again.close()


ProcessorMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestFoldProperties = ProcessorMachine.TestCase
