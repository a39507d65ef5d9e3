"""The ``docket`` command line.

Exit codes: 0 on success, 1 for a Docket error (one line, no traceback unless ``--debug`` or
``DOCKET_DEBUG=1``), 2 for usage errors (click's default), 3 when ``replay`` finds
non-determinism.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from docket.app import App
from docket.cli_input import (
    check_queues,
    json_arg,
    json_value,
    kwargs_besides,
    load_app,
    timeout_option,
)
from docket.client import Client, IdReusePolicy
from docket.client_input import START_OPTIONS
from docket.config import Settings, flag
from docket.errors import DocketError, UpdateFailedError, WorkflowFailedError, WorkflowNotFoundError

T = TypeVar("T")


def _settings(ctx: click.Context) -> Settings:
    options = ctx.find_root().params
    return Settings.from_env(data_dir=options.get("data_dir"), namespace=options.get("namespace"))


def _handle_errors(fn: Callable[..., T]) -> Callable[..., T]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except DocketError as exc:
            if flag("DOCKET_DEBUG") or click.get_current_context().find_root().params.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


def _run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def _print(value: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(value, default=str))
    elif isinstance(value, dict):
        width = max((len(k) for k in value), default=0)
        for key, item in value.items():
            click.echo(f"{key:<{width}}  {item}")
    else:
        click.echo(value)


@click.group(
    context_settings={"auto_envvar_prefix": "DOCKET", "help_option_names": ["-h", "--help"]}
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Data directory (default ./.docket; env DOCKET_DATA_DIR).",
)
@click.option("--namespace", help="Topic namespace (default 'default'; env DOCKET_NAMESPACE).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def main(data_dir: Path | None, namespace: str | None, debug: bool) -> None:
    """Docket: durable workflows on a Kafka-style log."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# -- running ------------------------------------------------------------------------------------


async def _serve(
    app: App,
    settings: Settings,
    *,
    processor: bool,
    worker: bool,
    concurrency: int,
    queues: tuple[str, ...] = (),
) -> None:
    from docket.engine import Engine

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before start: a stop during start-up is clean too
        loop.add_signal_handler(sig, stop.set)
    engine = Engine(
        app,
        settings=settings,
        processor=processor,
        worker=worker,
        max_concurrency=concurrency,
        task_queues=queues or None,
    )
    await engine.start()
    served = f"worker ({', '.join(sorted(queues or app.queues()))})"
    roles = " + ".join(r for r, on in (("processor + timers", processor), (served, worker)) if on)
    logging.getLogger("docket").info(
        "docket %s running app %r in %s (namespace %r); SIGTERM stops cleanly",
        roles,
        app.name,
        settings.data_dir,
        settings.namespace,
    )
    waiter = asyncio.ensure_future(engine.wait_stopped())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    await engine.stop()  # finishes the batch in hand and the steps running now
    if waiter.done() and not waiter.cancelled():
        waiter.result()  # re-raise a component failure
    else:
        waiter.cancel()


_QUEUE_OPTION = click.option(
    "-q",
    "--queue",
    "queues",
    multiple=True,
    help="A task queue the worker serves (repeat for more; default: every queue of the app).",
)

_CONCURRENCY_OPTION = click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Steps run at once.",
)


@main.command()
@click.option("-A", "--app", "app_spec", required=True, help="The app, as module:attribute.")
@_CONCURRENCY_OPTION
@click.option(
    "--worker/--no-worker",
    "with_worker",
    default=True,
    show_default=True,
    help="Also run a worker here (--no-worker: steps run in `docket worker` processes).",
)
@_QUEUE_OPTION
@click.pass_context
@_handle_errors
def run(
    ctx: click.Context, app_spec: str, concurrency: int, with_worker: bool, queues: tuple[str, ...]
) -> None:
    """Run the processor, timer service and a worker for an app, until SIGTERM."""
    app = load_app(app_spec)
    check_queues(app, queues)
    serve = _serve(
        app,
        _settings(ctx),
        processor=True,
        worker=with_worker,
        concurrency=concurrency,
        queues=queues,
    )
    _run(serve)


@main.command()
@click.option("-A", "--app", "app_spec", required=True, help="The app, as module:attribute.")
@_CONCURRENCY_OPTION
@_QUEUE_OPTION
@click.pass_context
@_handle_errors
def worker(ctx: click.Context, app_spec: str, concurrency: int, queues: tuple[str, ...]) -> None:
    """Run only a worker for an app's steps (next to an engine using the same data directory)."""
    app = load_app(app_spec)
    check_queues(app, queues)
    serve = _serve(
        app, _settings(ctx), processor=False, worker=True, concurrency=concurrency, queues=queues
    )
    _run(serve)


# -- workflows ----------------------------------------------------------------------------------


@main.group()
def workflow() -> None:
    """Start, inspect and replay workflows."""


async def _with_client(settings: Settings, fn: Callable[[Client], Awaitable[T]]) -> T:
    client = Client.connect(settings)
    try:
        return await fn(client)
    finally:
        await client.close()


@workflow.command()
@click.argument("workflow_type")
@click.option(
    "--args", "args_json", help="Positional arguments as a JSON array, e.g. '[\"World\"]'."
)
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("--id", "workflow_id", help="Workflow ID (default: a new UUID).")
@click.option(
    "--id-reuse-policy",
    type=click.Choice([p.value for p in IdReusePolicy]),
    default=IdReusePolicy.ALLOW_AFTER_CLOSE.value,
    show_default=True,
)
@click.option(
    "--start-delay",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds before the code begins.",
)
@click.option(
    "--run-timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds each run may take."
)
@click.option(
    "--execution-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds the whole chain of runs may take.",
)
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@timeout_option(30.0, "Seconds to wait for answers.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_handle_errors
def start(
    ctx: click.Context,
    workflow_type: str,
    args_json: str | None,
    kwargs_json: str | None,
    workflow_id: str | None,
    id_reuse_policy: str,
    start_delay: float | None,
    run_timeout: float | None,
    execution_timeout: float | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Start WORKFLOW_TYPE (by its registered name); an engine must be running."""
    args = json_arg(args_json, "--args", list)
    kwargs = kwargs_besides(kwargs_json, START_OPTIONS)

    async def go(client: Client) -> dict[str, Any]:
        client.reply_timeout = timeout
        handle = await client.start(
            workflow_type,
            *args,
            workflow_id=workflow_id,
            id_reuse_policy=IdReusePolicy(id_reuse_policy),
            start_delay=start_delay,
            run_timeout=run_timeout,
            execution_timeout=execution_timeout,
            **kwargs,
        )
        out: dict[str, Any] = {"workflow_id": handle.workflow_id, "run_id": handle.run_id}
        if wait:
            out["result"] = await handle.result(timeout=timeout)
        return out

    _print(_run(_with_client(_settings(ctx), go)), as_json)


def _pending_step(step: dict[str, Any]) -> str:
    when = (
        f", retry at {step['retry_at']}"
        if step["retry_at"]
        else f", started {step['started_at']}"
        if step["started_at"]
        else ""
    )
    return f"{step['name']}#{step['seq']} (attempt {step['attempt']}{when})"


@workflow.command()
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_handle_errors
def describe(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Status, type, times, pending steps and timers of a workflow's latest run."""
    description = _run(_with_client(_settings(ctx), lambda c: c.describe(workflow_id)))
    data = description.to_json()
    if not as_json:
        data["pending_steps"] = ", ".join(map(_pending_step, data["pending_steps"])) or "-"
        data["pending_timers"] = (
            ", ".join(f"#{t['seq']} at {t['fire_at']}" for t in data["pending_timers"]) or "-"
        )
    _print(data, as_json)


@workflow.command()
@click.argument("workflow_id")
@click.option("--run-id", help="A specific run (default: the latest).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Exact events as JSON lines (a history file for replay).",
)
@click.pass_context
@_handle_errors
def history(ctx: click.Context, workflow_id: str, run_id: str | None, as_json: bool) -> None:
    """The events of a workflow run, in order."""
    from docket.reader import to_history_event
    from docket.replay import event_to_json

    async def read(client: Client) -> list[dict[str, Any]]:
        return client._reader.history(workflow_id, run_id)

    for event in _run(_with_client(_settings(ctx), read)):
        if as_json:
            click.echo(event_to_json(event))
        else:
            e = to_history_event(event)
            attributes = json.dumps(e.to_json()["attributes"], default=str)
            click.echo(
                f"{e.event_id:>5}  {e.timestamp.isoformat()}  {e.type:<18} {attributes[:120]}"
            )


@workflow.command()
@click.argument("workflow_id")
@timeout_option(None, "Seconds to wait (default: forever).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_handle_errors
def result(ctx: click.Context, workflow_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait for a workflow's result and print it (exit 1 if it failed)."""

    async def go(client: Client) -> Any:
        return await client.get_handle(workflow_id).result(timeout=timeout)

    try:
        value = _run(_with_client(_settings(ctx), go))
    except WorkflowFailedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _print({"workflow_id": workflow_id, "result": value} if as_json else value, as_json)


@workflow.command(name="signal")
@click.argument("workflow_id")
@click.argument("signal_name")
@click.option("--args", "args_json", help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@timeout_option(30.0, "Seconds to wait for the ack.")
@click.pass_context
@_handle_errors
def signal_(
    ctx: click.Context,
    workflow_id: str,
    signal_name: str,
    args_json: str | None,
    kwargs_json: str | None,
    timeout: float,
) -> None:
    """Send SIGNAL_NAME to a running workflow; returns once it is recorded."""
    args = json_arg(args_json, "--args", list)
    kwargs = json_arg(kwargs_json, "--kwargs", dict)

    async def go(client: Client) -> None:
        client.reply_timeout = timeout
        await client.get_handle(workflow_id).signal(signal_name, *args, **kwargs)

    _run(_with_client(_settings(ctx), go))
    click.echo(f"signal {signal_name!r} recorded for {workflow_id}")


@workflow.command()
@click.argument("workflow_id")
@click.option("--reason", default="", help="Why; recorded in history.")
@click.pass_context
@_handle_errors
def cancel(ctx: click.Context, workflow_id: str, reason: str) -> None:
    """Ask a running workflow to stop; its code may clean up first."""

    async def go(client: Client) -> None:
        await client.get_handle(workflow_id).cancel(reason)

    _run(_with_client(_settings(ctx), go))
    click.echo(f"cancellation requested for {workflow_id}")


@workflow.command()
@click.argument("workflow_id")
@click.option("--reason", default="", help="Why; recorded in history.")
@click.pass_context
@_handle_errors
def terminate(ctx: click.Context, workflow_id: str, reason: str) -> None:
    """Stop a running workflow at once (no cleanup runs)."""

    async def go(client: Client) -> None:
        await client.get_handle(workflow_id).terminate(reason)

    _run(_with_client(_settings(ctx), go))
    click.echo(f"terminated {workflow_id}")


@workflow.command(name="query")
@click.argument("workflow_id")
@click.argument("query_name")
@click.option("--args", "args_json", help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@timeout_option(30.0, "Seconds to wait.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_handle_errors
def query_(
    ctx: click.Context,
    workflow_id: str,
    query_name: str,
    args_json: str | None,
    kwargs_json: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Ask a workflow a query and print the answer (nothing is recorded)."""
    args = json_arg(args_json, "--args", list)
    kwargs = json_arg(kwargs_json, "--kwargs", dict)

    async def go(client: Client) -> Any:
        client.reply_timeout = timeout
        return await client.get_handle(workflow_id).query(query_name, *args, **kwargs)

    answer = _run(_with_client(_settings(ctx), go))
    click.echo(
        json.dumps(answer, default=str) if as_json or not isinstance(answer, str) else answer
    )


@workflow.command(name="update")
@click.argument("workflow_id")
@click.argument("update_name")
@click.option("--args", "args_json", help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("--update-id", help="Makes a retry safe: the same ID is applied once.")
@timeout_option(None, "Seconds to wait for the outcome (default: no limit).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_handle_errors
def update_(
    ctx: click.Context,
    workflow_id: str,
    update_name: str,
    args_json: str | None,
    kwargs_json: str | None,
    update_id: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Send UPDATE_NAME to a running workflow and print what its handler returns (exit 1 if
    the handler raised; a rejected update records nothing)."""
    args = json_arg(args_json, "--args", list)
    kwargs = kwargs_besides(kwargs_json, frozenset({"update_id"}))

    async def go(client: Client) -> Any:
        handle = client.get_handle(workflow_id)
        update = await handle.start_update(update_name, *args, update_id=update_id, **kwargs)
        return await update.result(timeout=timeout)

    try:
        value = _run(_with_client(_settings(ctx), go))
    except UpdateFailedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(value, default=str) if as_json or not isinstance(value, str) else value)


@workflow.command(name="list")
@click.option(
    "--status",
    type=click.Choice(
        [
            "running",
            "completed",
            "failed",
            "terminated",
            "cancelled",
            "continued_as_new",
            "timed_out",
        ]
    ),
)
@click.option("--type", "workflow_type", help="Only this workflow type.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_handle_errors
def list_(ctx: click.Context, status: str | None, workflow_type: str | None, as_json: bool) -> None:
    """Executions (latest run per workflow ID), oldest first."""
    found = _run(
        _with_client(_settings(ctx), lambda c: c.list(status=status, workflow_type=workflow_type))
    )
    if as_json:
        for d in found:
            click.echo(json.dumps(d.to_json()))
        return
    for d in found:
        click.echo(
            f"{d.workflow_id:<40} {d.workflow_type:<24} {d.status:<10} {d.started_at.isoformat()}"
        )


@workflow.command()
@click.option(
    "-A", "--app", "app_spec", required=True, help="The app whose current code is checked."
)
@click.option("--workflow-id", help="Replay only this workflow's runs.")
@click.option(
    "--history",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replay these JSON-lines history files instead of the log.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_handle_errors
def replay(
    ctx: click.Context,
    app_spec: str,
    workflow_id: str | None,
    files: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Re-run recorded histories against the current code; exit 3 on non-determinism."""
    from docket.log.factory import open_log
    from docket.log.topics import Topics
    from docket.replay import load_history, replay_history, replay_log

    app = load_app(app_spec)
    if files:
        results = [replay_history(app, load_history(f)) for f in files]
    else:
        settings = _settings(ctx)
        log = open_log(settings, create=False)
        try:
            results = list(replay_log(app, log, Topics(log.namespace), workflow_id=workflow_id))
        finally:
            log.close()
        if workflow_id is not None and not results:  # a typo must not pass as "0 of 0 clean"
            raise WorkflowNotFoundError(
                f"no history of workflow_id={workflow_id!r} in the log of namespace "
                f"{settings.namespace!r}"
            )
    failed = 0
    for r in results:
        failed += not r.ok
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "workflow_id": r.workflow_id,
                        "run_id": r.run_id,
                        "workflow_type": r.workflow_type,
                        "events": r.events,
                        "ok": r.ok,
                        "error": str(r.error) if r.error else None,
                    }
                )
            )
        elif r.ok:
            click.echo(f"ok      {r.workflow_id} ({r.workflow_type}, {r.events} events)")
        else:
            click.echo(f"FAILED  {r.workflow_id}: {r.error}")
    if not as_json:
        click.echo(f"{len(results) - failed} of {len(results)} histories replayed cleanly")
    if failed:
        sys.exit(3)


# -- steps completed from outside (asynchronous completion) -------------------------------------


@main.group()
def step() -> None:
    """Finish, fail or heartbeat a step that called complete_async(), by its task token."""


@step.command(name="complete")
@click.argument("task_token")
@click.option("--result", "result_json", help="The step's return value as JSON (default: null).")
@click.pass_context
@_handle_errors
def step_complete(ctx: click.Context, task_token: str, result_json: str | None) -> None:
    """Complete the pending step attempt TASK_TOKEN with a result."""
    result = json_value(result_json, "--result")
    _run(_with_client(_settings(ctx), lambda client: client.complete_step(task_token, result)))
    click.echo("step completed")


@step.command(name="fail")
@click.argument("task_token")
@click.option("--message", required=True, help="Why it failed (an ApplicationError).")
@click.pass_context
@_handle_errors
def step_fail(ctx: click.Context, task_token: str, message: str) -> None:
    """Fail the pending step attempt TASK_TOKEN; its retry policy decides what follows."""
    _run(_with_client(_settings(ctx), lambda client: client.fail_step(task_token, message)))
    click.echo("step failed")


@step.command(name="heartbeat")
@click.argument("task_token")
@click.option("--details", "details_json", help="Progress details as JSON.")
@click.pass_context
@_handle_errors
def step_heartbeat(ctx: click.Context, task_token: str, details_json: str | None) -> None:
    """Heartbeat the pending step attempt TASK_TOKEN (resets its heartbeat timeout)."""
    details = json_value(details_json, "--details")
    _run(_with_client(_settings(ctx), lambda client: client.heartbeat_step(task_token, details)))
    click.echo("heartbeat recorded")


# -- partitions -----------------------------------------------------------------------------------


@main.group()
def partitions() -> None:
    """Show or grow the namespace's partition count."""


@partitions.command(name="show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@_handle_errors
def partitions_show(ctx: click.Context, as_json: bool) -> None:
    """The namespace's partition count and generation of topics."""
    from docket.log.growth import layout_of

    layout = layout_of(_settings(ctx))
    shown = {
        "namespace": layout.namespace,
        "partitions": layout.partitions,
        "generation": layout.generation,
        "topics": f"docket.{layout.storage}.*",
    }
    _print(shown, as_json)


@partitions.command(name="grow")
@click.argument("count", type=int)
@click.pass_context
@_handle_errors
def partitions_grow(ctx: click.Context, count: int) -> None:
    """Move the namespace to COUNT partitions, keeping every execution.

    Stop every engine, worker and client of the namespace first. The records are copied
    into a new generation of topics, routed for COUNT; then every process started
    afterwards uses it. See docs/operations.md#growing-partitions.
    """
    from docket.log.growth import grow

    report = grow(_settings(ctx), count, progress=click.echo)
    click.echo(f"copied {report.total} records; start the engines again")


# -- audit ----------------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """Export executions' histories from the history topic, for audit."""


@audit.command(name="export")
@click.option(
    "--since",
    help="Only runs with events at or after this time: ISO 8601 or a duration ago (2h, 7d).",
)
@click.option("--workflow", "workflow_id", help="Only this workflow ID's runs.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON lines here (default: stdout).",
)
@click.pass_context
@_handle_errors
def audit_export(
    ctx: click.Context, since: str | None, workflow_id: str | None, output: Path | None
) -> None:
    """One JSON line per run, with its whole history, read from the history topic (from its
    beginning; no engine needs to run)."""
    from docket.audit import export_audit, parse_time

    when = None
    if since is not None:
        try:
            when = parse_time(since)
        except ValueError as exc:
            click.echo(f"error: --since: {exc}", err=True)
            sys.exit(2)
    count = export_audit(output, settings=_settings(ctx), since=when, workflow_id=workflow_id)
    if output is not None:
        click.echo(f"exported {count} runs to {output}")


if __name__ == "__main__":
    main()
