"""Bad input gets a clear error and changes nothing (DESIGN.md, Guarantees).

Garbage on the log is skipped with a logged error and the engine keeps going; what a client
cannot encode fails at the client and records nothing; unknown workflows are rejected.
Everything runs on the real embedded log and RocksDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

import docket
from docket.codec.payload import to_payload
from docket.codec.records import COMMANDS, MAGIC, TIMERS
from docket.errors import ClientError, SerializationError, WorkflowFailedError
from docket.log.base import OutRecord
from docket.log.embedded import EmbeddedLog
from docket.log.partitioner import partition as partition_of
from docket.log.topics import Topics

PARTITIONS = 4
T = TypeVar("T")
TOPICS = Topics("default")

app = docket.App("bad-input")


@dataclass
class Order:
    order_id: str
    cents: int


@app.step
async def echo(text: str) -> str:
    return text


@app.workflow
async def hello(ctx: docket.WorkflowContext, name: str) -> str:
    return await ctx.step(echo, f"Hello, {name}!")


@app.workflow
async def long_nap(ctx: docket.WorkflowContext) -> None:
    await ctx.sleep(3600)


@app.workflow
async def nap(ctx: docket.WorkflowContext) -> str:
    await ctx.sleep(0.05)
    return "rested"


@app.workflow
async def returns_object(ctx: docket.WorkflowContext) -> Any:
    return object()


@app.workflow
async def takes_order(ctx: docket.WorkflowContext, order: Order) -> int:
    return order.cents


@app.step(task_queue="nobody-listens")
async def never_run() -> str:
    raise AssertionError("no worker serves this queue")


@app.workflow
async def waits_for_unserved_step(ctx: docket.WorkflowContext) -> str:
    return await ctx.step(never_run)


other_app = docket.App("other")


@other_app.workflow
async def elsewhere(ctx: docket.WorkflowContext) -> None:
    return None


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


async def unless_the_engine_stops(engine: docket.Engine, scenario: Coroutine[Any, Any, T]) -> T:
    """Run ``scenario``; fail at once (not after a reply timeout) if a component crashes."""
    stopped = asyncio.ensure_future(engine.wait_stopped())
    work = asyncio.ensure_future(scenario)
    try:
        done, _ = await asyncio.wait({work, stopped}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        if stopped in done:
            raise AssertionError(f"the engine stopped: {stopped.exception()!r}")
        raise AssertionError("the scenario did not finish within 20 s")
    finally:
        for future in (work, stopped):
            if not future.done():
                future.cancel()
                with contextlib.suppress(BaseException):
                    await future


def engine_log(engine: docket.Engine) -> EmbeddedLog:
    assert engine.log is not None
    return engine.log


def end_offsets(log: EmbeddedLog, topic: str) -> list[int]:
    return [log.end_offset(topic, p) for p in range(PARTITIONS)]


def start_command(workflow_id: str, command_id: str, workflow_type: str = "hello",
                  args: list[Any] | None = None) -> bytes:
    return COMMANDS.encode({
        "command_id": command_id, "workflow_id": workflow_id, "ts_us": time.time_ns() // 1000,
        "body": ("StartWorkflow", {"workflow_type": workflow_type,
                                   "args": [to_payload(a) for a in (args if args is not None else ["raw"])],
                                   "kwargs": {}, "task_queue": "default",
                                   "id_reuse_policy": "allow_after_close", "reply_to": None})})


def errors_logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and r.name == "docket" and text in r.getMessage()]


# -- garbage on the log ---------------------------------------------------------------------------


async def test_garbage_commands_are_skipped_and_later_commands_processed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="docket")
    workflow_id = "after-garbage"
    p = partition_of(workflow_id, PARTITIONS)
    valid = start_command(workflow_id, "unused")
    garbage = [b"not a record at all", b"", MAGIC + b"\x00" * 8 + b"unknown schema", valid[:-4],
               MAGIC + COMMANDS.fingerprint + b"\xff" * 32]
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        log = engine_log(engine)
        log.append([OutRecord(TOPICS.commands, p, workflow_id, g) for g in garbage])
        client = docket.Client.connect(data_dir=tmp_path)  # its start goes after them on the log
        try:
            handle = await client.start(hello, "after", workflow_id=workflow_id)
            assert await handle.result(timeout=10) == "Hello, after!"
        finally:
            await client.close()
        await until(lambda: log.committed(TOPICS.group("processor"), TOPICS.commands, p) >= len(garbage) + 1)
        assert [e.type for e in await engine.client.get_handle(workflow_id).history()] == [
            "WorkflowStarted", "StepScheduled", "StepCompleted", "WorkflowCompleted"]
    messages = errors_logged(caplog, "skipping undecodable record")
    assert len(messages) == len(garbage)
    for offset, message in enumerate(messages):
        assert f"{TOPICS.commands}[{p}] offset {offset}:" in message
    assert "not a Docket command record" in messages[0]
    assert "unknown writer schema fingerprint" in messages[2]
    assert "cannot decode a command record" in messages[3]


async def test_garbage_timer_requests_and_tasks_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="docket")
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        log = engine_log(engine)
        log.append([OutRecord(TOPICS.timers, p, "x", b"junk timer") for p in range(PARTITIONS)]
                   + [OutRecord(TOPICS.tasks("default"), p, "x", b"junk task") for p in range(PARTITIONS)])
        assert await (await engine.client.start(nap)).result(timeout=10) == "rested"
        assert await (await engine.client.start(hello, "t")).result(timeout=10) == "Hello, t!"
    assert len(errors_logged(caplog, "skipping undecodable timer")) == PARTITIONS
    assert len(errors_logged(caplog, "skipping undecodable task")) == PARTITIONS


async def test_timer_request_with_a_garbage_command_is_skipped(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        log = engine_log(engine)
        request = TIMERS.encode({"timer_id": "bogus", "workflow_id": "x", "fire_at_us": 0,
                                 "command": b"garbage command"})
        log.append([OutRecord(TOPICS.timers, partition_of("x", PARTITIONS), "x", request)])

        async def scenario() -> str:
            return await (await engine.client.start(nap)).result(timeout=10)

        assert await unless_the_engine_stops(engine, scenario()) == "rested"


async def test_command_on_the_wrong_partition_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="docket")
    workflow_id = "misplaced"
    right = partition_of(workflow_id, PARTITIONS)
    wrong = (right + 1) % PARTITIONS
    command = start_command(workflow_id, "misplaced-start")
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        log = engine_log(engine)
        log.append([OutRecord(TOPICS.commands, wrong, workflow_id, command)])
        await until(lambda: log.committed(TOPICS.group("processor"), TOPICS.commands, wrong) >= 1)
        assert end_offsets(log, TOPICS.history) == [0] * PARTITIONS
        assert await engine.client.list() == []
        (message,) = errors_logged(caplog, "skipping command misplaced-start")
        assert f"{TOPICS.commands}[{wrong}] offset 0" in message
        assert f"workflow 'misplaced' belongs on partition {right}" in message
        # the same command where it belongs starts the workflow: only the placement was wrong
        log.append([OutRecord(TOPICS.commands, right, workflow_id, command)])
        await until(lambda: log.end_offset(TOPICS.history, right) > 0)
        result = await engine.client.get_handle(workflow_id).result(timeout=10)
        assert result == "Hello, raw!"


async def test_commands_for_unknown_runs_change_nothing(tmp_path: Path) -> None:
    workflow_id = "ghost"
    p = partition_of(workflow_id, PARTITIONS)
    stale = [
        ("CompleteStep", {"run_id": "no-such-run", "seq": 1, "attempt": 1, "result": to_payload(1)}),
        ("FailStep", {"run_id": "no-such-run", "seq": 1, "attempt": 1, "failure": {
            "type": "X", "message": "m", "stack": "", "non_retryable": False, "details": None,
            "kind": "application", "cause": None}}),
        ("FireTimer", {"run_id": "no-such-run", "kind": "sleep", "seq": 1, "attempt": 0, "fire_at_us": 0}),
        ("HeartbeatStep", {"run_id": "no-such-run", "seq": 1, "attempt": 1, "details": None}),
    ]
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        log = engine_log(engine)
        log.append([OutRecord(TOPICS.commands, p, workflow_id, COMMANDS.encode(
            {"command_id": f"stale-{i}", "workflow_id": workflow_id, "ts_us": 0, "body": body}))
            for i, body in enumerate(stale)])
        await until(lambda: log.committed(TOPICS.group("processor"), TOPICS.commands, p) >= len(stale))
        assert end_offsets(log, TOPICS.history) == [0] * PARTITIONS
        assert end_offsets(log, TOPICS.replies) == [0] * PARTITIONS
        assert await (await engine.client.start(hello, "still fine")).result(timeout=10) == "Hello, still fine!"


# -- bad input at the client ----------------------------------------------------------------------------


async def test_unencodable_arguments_fail_at_start_and_record_nothing(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        log = engine_log(engine)
        with pytest.raises(SerializationError, match=r"cannot encode argument 0 of workflow 'hello': "
                                                     r"object is not JSON-encodable\. Use JSON types"):
            await engine.client.start(hello, object(), workflow_id="never")  # type: ignore[arg-type]
        with pytest.raises(SerializationError, match=r"cannot encode argument 'name' of workflow 'hello'"):
            await engine.client.start(hello, name={"nested": [object()]})  # type: ignore[arg-type]
        with pytest.raises(SerializationError, match=r"argument 0 of workflow 'takes_order'"):
            await engine.client.start("takes_order", Order("o", 1).__dict__ | {"at": object()})
        assert end_offsets(log, TOPICS.commands) == [0] * PARTITIONS
        assert end_offsets(log, TOPICS.history) == [0] * PARTITIONS
        assert await engine.client.list() == []
        # the client is still usable
        assert await (await engine.client.start(hello, "ok")).result(timeout=10) == "Hello, ok!"


async def test_unknown_workflows_are_rejected_and_record_nothing(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        log = engine_log(engine)
        with pytest.raises(ClientError, match=r"start of 'nope' as workflow_id='x' was rejected: unknown "
                                              r"workflow type 'nope': no workflow of that name is registered"):
            await engine.client.start("nope", workflow_id="x")
        with pytest.raises(ClientError, match="unknown workflow type 'elsewhere'"):
            await engine.client.start(elsewhere)  # registered in another app only
        assert end_offsets(log, TOPICS.history) == [0] * PARTITIONS
        assert await engine.client.list() == []
        with pytest.raises(docket.errors.WorkflowNotFoundError):
            await engine.client.get_handle("x").result(timeout=5)


@pytest.mark.parametrize("workflow_id", ["a\0b", "x" * 1001])
async def test_invalid_workflow_ids_are_rejected_at_the_client(tmp_path: Path, workflow_id: str) -> None:
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS, processor=False,
                             worker=False) as engine:
        log = engine_log(engine)
        with pytest.raises(ClientError, match="is invalid: use 1-1000 characters, no NUL"):
            await engine.client.start(hello, "x", workflow_id=workflow_id)
        assert end_offsets(log, TOPICS.commands) == [0] * PARTITIONS


@pytest.mark.parametrize(
    ("start_kwargs", "message"),
    [
        ({"workflow_id": "lone \ud800"}, "no lone surrogate"),
        ({"task_queue": "queue \udfff"}, "without lone surrogates"),
        ({"task_queue": 5}, "must be strings"),
    ],
)
async def test_a_start_handed_to_the_processor_beside_it_is_checked_like_an_appended_one(
    tmp_path: Path, start_kwargs: dict[str, Any], message: str
) -> None:
    """The engine's own client hands its starts to the processor beside it: names a
    record cannot hold are refused at the client with a ClientError saying which, before
    anything is recorded, and the engine runs on."""
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        log = engine_log(engine)
        with pytest.raises(ClientError, match=message):
            await engine.client.start(hello, "x", **start_kwargs)
        with pytest.raises(ClientError, match="without lone surrogates"):
            await engine.client.start("name \ud800", "x")
        assert end_offsets(log, TOPICS.history) == [0] * PARTITIONS
        handle = await engine.client.start(hello, "x")  # the engine runs on
        assert await handle.result(timeout=10) == "Hello, x!"


@pytest.mark.parametrize(
    ("start_kwargs", "message"),
    [
        ({"\ud800": 1}, "keyword argument names"),  # a lone surrogate
        ({"run_timeout": 1e17}, "run_timeout must be"),  # more ms than a record can hold
        ({"execution_timeout": 1e13}, "execution_timeout must be"),  # a deadline, in us
        ({"start_delay": 1e13}, "start_delay must be"),
    ],
)
async def test_a_start_no_record_can_hold_leaves_its_workflow_id_usable(
    tmp_path: Path, start_kwargs: dict[str, Any], message: str
) -> None:
    """A start whose keyword argument names or options no record can hold is refused at
    the client, before the processor beside it takes it: there it stopped the workflow ID,
    refusing every later start of it until the engine restarted."""
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        with pytest.raises(ClientError, match=message):
            await engine.client.start(hello, "x", workflow_id="order-1", **start_kwargs)
        handle = await engine.client.start(hello, "x", workflow_id="order-1")
        assert await handle.result(timeout=10) == "Hello, x!"


@app.workflow
async def sleeps_for(ctx: docket.WorkflowContext, seconds: float) -> str:
    try:
        await ctx.sleep(seconds)
    except docket.errors.WorkflowError as exc:
        return str(exc)
    return "slept"


@pytest.mark.parametrize("seconds", [1e13, float("nan")])
async def test_a_sleep_no_record_can_hold_fails_in_the_workflow_code(
    tmp_path: Path, seconds: float
) -> None:
    """A timer due after 100,000 years (or never: nan) has a fire time no record holds:
    the workflow code that asked gets a WorkflowError, where before the processor's
    encode failed and stopped the execution (its very start was refused)."""
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        handle = await engine.client.start(sleeps_for, seconds)
        outcome = await handle.result(timeout=10)
        assert "a sleep or timeout may last at most 100,000 years" in outcome, outcome
        assert "test_bad_input.py" in outcome  # where the code asked


async def test_no_engine_to_answer_times_out_with_advice(tmp_path: Path) -> None:
    """With no processor running, a start and a result wait their timeouts, then say what
    to check; the client stays usable."""
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS, processor=False,
                             worker=False) as engine:
        client = engine.client
        client.reply_timeout = 0.2
        began = time.monotonic()
        with pytest.raises(docket.errors.ReplyTimeoutError, match="is an engine running"):
            await client.start(hello, "x", workflow_id="w-1")
        assert 0.2 <= time.monotonic() - began < 5
        assert client._waiters == {}  # the request was forgotten
        with pytest.raises(docket.errors.ReplyTimeoutError, match="is an engine running"):
            await client.get_handle("w-1", "some-run").result(timeout=0.2)


async def test_a_result_not_there_in_time_says_the_run_is_still_running(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        handle = await engine.client.start(long_nap)
        with pytest.raises(docket.errors.ReplyTimeoutError, match="it is still running"):
            await handle.result(timeout=0.3)
        assert (await handle.describe()).status == "running"


async def test_start_with_something_that_is_not_a_workflow(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS, processor=False,
                             worker=False) as engine:
        with pytest.raises(ClientError, match="needs a registered workflow or a workflow name"):
            await engine.client.start(len)  # type: ignore[call-overload]
        with pytest.raises((ValueError, ClientError), match="'sometimes'"):
            await engine.client.start(hello, "x", id_reuse_policy="sometimes")
        assert end_offsets(engine_log(engine), TOPICS.commands) == [0] * PARTITIONS


# -- bad input that reaches workflow code -------------------------------------------------------------


async def _start_bad(engine: docket.Engine, case: str) -> docket.WorkflowHandle[Any]:
    client = engine.client
    if case == "unencodable workflow result":
        return await client.start(returns_object)
    if case == "arguments that do not fit the dataclass":
        return await client.start("takes_order", {"id": "wrong shape"})
    # a step result whose payload cannot be decoded, as a foreign or buggy worker could send
    handle = await client.start(waits_for_unserved_step, workflow_id="bad-result")
    assert handle.run_id is not None
    log = engine_log(engine)
    await until(lambda: log.end_offset(TOPICS.tasks("nobody-listens"), partition_of("bad-result", PARTITIONS)) > 0)
    log.append([OutRecord(TOPICS.commands, partition_of("bad-result", PARTITIONS), "bad-result", COMMANDS.encode({
        "command_id": "bad-completion", "workflow_id": "bad-result", "ts_us": 0,
        "body": ("CompleteStep", {"run_id": handle.run_id, "seq": 1, "attempt": 1,
                                  "result": {"encoding": "json/plain", "data": b"{not json"}})}))])
    return handle


@pytest.mark.parametrize("case", ["unencodable workflow result", "arguments that do not fit the dataclass",
                                  "undecodable step result"])
async def test_bad_data_in_workflow_code_fails_that_workflow_only(tmp_path: Path, case: str) -> None:
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:

        async def scenario() -> None:
            handle = await _start_bad(engine, case)
            with pytest.raises(WorkflowFailedError):
                await handle.result(timeout=10)
            assert await (await engine.client.start(hello, "next")).result(timeout=10) == "Hello, next!"

        await unless_the_engine_stops(engine, scenario())


async def test_bad_id_reuse_policy_is_a_client_error(tmp_path: Path) -> None:
    async with docket.Engine(app, data_dir=tmp_path, partitions=PARTITIONS) as engine:
        with pytest.raises(docket.errors.ClientError, match="'sometimes' is not one of"):
            await engine.client.start(hello, "x", id_reuse_policy="sometimes")


def test_retry_policy_rejects_confusing_values() -> None:
    with pytest.raises(ValueError, match="must be a list of type names"):
        docket.RetryPolicy(non_retryable_error_types="ValueError")
    with pytest.raises(ValueError, match="shorter than initial_interval"):
        docket.RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=1))


def test_registering_a_step_twice_is_a_definition_error() -> None:
    other = docket.App("twice")
    step = other.step(lambda: None)
    with pytest.raises(docket.errors.DefinitionError, match="already registered"):
        other.step(step)
