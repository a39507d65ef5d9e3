"""Engine: everything in one process — execution processor, timer service, worker, client —
on the embedded log by default. ``async with docket.Engine(app) as engine: ...``."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol

from docket.app import App
from docket.client import Client
from docket.clock import Clock, SystemClock
from docket.config import Settings
from docket.errors import ConfigurationError
from docket.log.base import Log
from docket.log.embedded import member_id
from docket.log.factory import open_log
from docket.log.topics import Topics
from docket.reader import StateReader
from docket.streams.execution import ExecutionProcessor
from docket.streams.replica import HistoryReplica
from docket.streams.sources import SignalSources
from docket.streams.timers import TimerService
from docket.worker import Worker

log = logging.getLogger("docket")


class _Component(Protocol):
    """The processor, the timer service, the signal sources and the worker."""

    def run(self, stop: asyncio.Event) -> Coroutine[Any, Any, None]: ...

    def close(self) -> None: ...


class Engine:
    """Runs an app's workflows and steps in this process.

    Args:
        app: the workflows and steps to run.
        data_dir, namespace, partitions: override `Settings` (default: ``DOCKET_*`` env, then
            ``./.docket``, ``default``, 4).
        processor: run the execution processor and timer service here (turn off for a
            worker-only process).
        worker: run a worker for the app's task queues here.
        clock: time source (``docket.testing.ManualClock`` in tests).
        max_concurrency: steps a worker runs at once.
        task_queues: the queues this worker serves (default: the app's default queue and
            every queue a step names); e.g. a per-process queue for steps routed to it.
        workflow_cache_size: live workflow instances kept in memory; 0 replays every
            activation from history (``DOCKET_ALWAYS_REPLAY=1`` does the same).
        prefer_local: a workflow this engine's client starts without a ``workflow_id``
            gets one on a partition this engine's processor owns, so its start, steps and
            result stay in this process (no hop through the log to another process and
            back). For an app deployed as several processes that each start their share
            of the workflows (behind a load balancer, say); not for one process that
            starts them all, which would then run them all. Workflows with an ID, and
            every other process's, are placed by their ID as always.
    """

    def __init__(
        self,
        app: App,
        *,
        data_dir: str | Path | None = None,
        namespace: str | None = None,
        partitions: int | None = None,
        processor: bool = True,
        worker: bool = True,
        clock: Clock | None = None,
        max_concurrency: int = 200,
        task_queues: Sequence[str] | None = None,
        workflow_cache_size: int | None = None,
        prefer_local: bool = False,
        settings: Settings | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or Settings.from_env(
            data_dir=data_dir, namespace=namespace, partitions=partitions
        )
        self.clock = clock or SystemClock()
        if max_concurrency < 1:  # said here, not as a bare ValueError of the thread pool at start
            raise ConfigurationError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self._run_processor = processor
        self._run_worker = worker
        self._max_concurrency = max_concurrency
        self._task_queues = list(task_queues or ())
        self._prefer_local = prefer_local
        cache = workflow_cache_size if workflow_cache_size is not None else 10_000
        self._cache_size = 0 if self.settings.always_replay else cache
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: list[_Component] = []  # closed by their tasks, as their loops end
        self._client: Client | None = None
        self.log: Log | None = None
        self.processor: ExecutionProcessor | None = None
        self.timers: TimerService | None = None
        self.worker: Worker | None = None
        self.sources: SignalSources | None = None  # the app's signal sources, with the processor

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the engine is not started: use 'async with Engine(app) as engine'")
        return self._client

    @property
    def state_dir(self) -> Path:
        """Where this engine's state stores are: the namespace's live generation's, once
        the engine has started (docket/log/layout.py)."""
        namespace = self.log.namespace if self.log is not None else self.settings.namespace
        return self.settings.data_dir / "state" / namespace

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the log, take partitions and start the components' loops. Should any of it
        fail, what was opened is closed again (stores, groups, the log) before it raises."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        self.log = open_log(settings)
        topics = Topics(self.log.namespace)
        self._stop.clear()
        tag = os.urandom(3).hex()  # one for every role: see member_id
        if self._run_processor:
            self.processor = ExecutionProcessor(
                self.app,
                self.log,
                topics,
                self.state_dir,
                self.clock,
                member_id("processor", tag),
                cache_size=self._cache_size,
                deadlock_timeout_s=settings.deadlock_timeout_s,
            )
            self.timers = TimerService(
                self.log, topics, self.state_dir, self.clock, member_id("timers", tag)
            )
            await self.processor.group.sync()
            await self.timers.group.sync()
            self._spawn(self.processor, "processor")
            self._spawn(self.timers, "timers")
            if self.app.signal_sources:  # groups named by the user's namespace: growth keeps them
                self.sources = SignalSources(
                    self.app,
                    self.log,
                    Topics(settings.namespace),
                    topics,
                    self.clock,
                    member_id("sources", tag),
                )
                await self.sources.sync()
                self._spawn(self.sources, "sources")
        processor = self.processor
        # on Kafka another machine may hold a partition: what this one has may be stale
        kafka = self.settings.bootstrap_servers is not None
        reader = StateReader(
            self.state_dir,
            self.log.partitions,
            live=lambda p: (
                processor.partitions[p].store if processor and p in processor.partitions else None
            ),
            replica=HistoryReplica(self.log, topics.history) if kafka else None,
        )
        if self._run_worker:
            self.worker = Worker(
                self.app,
                self.log,
                topics,
                member_id("worker", tag),
                max_concurrency=self._max_concurrency,
                queues=set(self._task_queues) if self._task_queues else None,
            )
            if self.processor is not None and self.log.reads_whole_appends:
                self.worker.reports_to = self.processor.inbox  # no log round trip (handoff.py)
            self.worker.histories_of = reader.run_histories  # see Worker._recorded_over
            await self.worker.sync_groups()  # own task partitions before the first start
            self._spawn(self.worker, "worker")
        self._client = Client(self.log, topics, reader)
        if processor is not None:  # its replies skip the log (streams/local_replies.py)
            processor.local_replies.register(self._client.client_id, self._client.take_reply)
            if self.log.reads_whole_appends:  # and so do its requests (as the worker's reports)
                self._client.commands_to = processor.inbox
            if self._prefer_local:
                self._client.local_workflow_id = processor.inbox.owns

    def _spawn(self, component: _Component, name: str) -> None:
        run = _closing(component.run(self._stop), component.close)
        task = asyncio.get_running_loop().create_task(run, name=f"docket-{name}")
        self._spawned.append(component)
        task.add_done_callback(self._crashed)
        self._tasks.append(task)

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not self._stop.is_set():
            log.error("%s stopped with an error", task.get_name(), exc_info=task.exception())
            self._stop.set()

    async def wait_stopped(self) -> None:
        """Block until `stop` is called or a component fails (raises its error)."""
        await self._stop.wait()
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def stop(self) -> None:
        """Finish the batch in hand, report running steps, and release partitions: each
        component's as soon as its loop ends (see `_closing`)."""
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for component in (self.worker, self.sources, self.timers, self.processor):
            if component is not None and component not in self._spawned:
                component.close()  # a start that failed before its loop began: what it opened
        self._spawned.clear()
        if self._client is not None:
            if self.processor is not None:
                self.processor.local_replies.unregister(self._client.client_id)
            await self._client.close()
        if self.log is not None:
            self.log.close()


async def _closing(run: Coroutine[Any, Any, None], close: Callable[[], None]) -> None:
    """Run a component's loop, then close it (leave its groups, close its stores) at once,
    whatever the others do. On a stop the processor's, timers' and sources' loops end after
    the batch in hand, but the worker's drain lasts as long as its longest step: partitions
    they kept meanwhile, no longer renewed, would lapse to another process, which could not
    open their stores while this one kept them locked, and their workflows would stall. The
    worker's reports then reach the other process's processor through the log (the inbox
    closed with its processor: streams/handoff.py)."""
    try:
        await run
    finally:
        close()
