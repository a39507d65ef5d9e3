"""W5 replay: record ``--n`` (200) workflows of ``--steps`` (10) steps, stop the engine, then
replay every recorded history against the current code.

- ``events_per_s`` (the headline): events of all runs / time of ``docket.replay.replay_history``
  over all of them, with histories already read from the log and decoded (pure replay:
  the deterministic loop, the workflow code and the matching of commands to history).
  Best and median of ``--rounds`` rounds.
- ``decode_events_per_s``: reading the history topic from the embedded log (SQLite) and
  Avro-decoding every event, grouped per run (what ``replay_log`` does before replaying).
- ``log_events_per_s``: ``docket.replay.replay_log`` end to end (read + decode + replay),
  as ``docket workflow replay`` runs it.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections import defaultdict
from typing import Any

from bench.apps import app
from bench.chain import run_chains
from bench.common import NAMESPACE, engine_params, make_engine, r3, temp_data_dir
from docket.codec.records import EVENTS
from docket.log.embedded import EmbeddedLog
from docket.log.topics import Topics
from docket.replay import replay_history, replay_log


def read_runs(log: EmbeddedLog, topics: Topics) -> list[list[dict[str, Any]]]:
    """Every run's events from the history topic, in order (as replay_log collects them)."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for partition in range(log.partitions):
        offset = 0
        while True:
            records = log.read(topics.history, partition, offset, 5000)
            if not records:
                break
            offset = records[-1].offset + 1
            for record in records:
                event = EVENTS.decode(record.value)
                seen = runs[(event["workflow_id"], event["run_id"])]
                if seen and event["event_id"] <= seen[-1]["event_id"]:
                    continue
                seen.append(event)
    return list(runs.values())


async def run(args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    n, conc, k, rounds = args.n or 200, args.concurrency or 32, args.steps, args.rounds
    with temp_data_dir(args) as data_dir:
        async with make_engine(args, data_dir) as eng:
            record_wall, errors = await run_chains(eng, n, conc, k, args.timeout)
            partitions = eng.settings.partitions
        log = EmbeddedLog(data_dir, namespace=NAMESPACE, partitions=partitions, create=False)
        topics = Topics(NAMESPACE)
        try:
            decode_times, replay_times, log_times = [], [], []
            failed = 0
            for _ in range(rounds):
                gc.collect()  # start each timed phase with the same heap, less noise
                t0 = time.perf_counter()
                runs = read_runs(log, topics)
                decode_times.append(time.perf_counter() - t0)
                gc.collect()
                t0 = time.perf_counter()
                results = [replay_history(app, events) for events in runs]
                replay_times.append(time.perf_counter() - t0)
                failed = sum(1 for r in results if not r.ok)
                gc.collect()
                t0 = time.perf_counter()
                log_results = list(replay_log(app, log, topics))
                log_times.append(time.perf_counter() - t0)
                failed += sum(1 for r in log_results if not r.ok)
            events = sum(len(r) for r in runs)
        finally:
            log.close()
    best, median = min(replay_times), statistics.median(replay_times)
    figures = {
        "workflows": n,
        "steps_per_workflow": k,
        "runs": len(runs),
        "events": events,
        "record_wall_s": r3(record_wall),
        "replay_s_best": r3(best),
        "events_per_s": r3(events / best),
        "events_per_s_median": r3(events / median),
        "workflows_per_s": r3(len(runs) / best),
        "decode_events_per_s": r3(events / min(decode_times)),
        "log_events_per_s": r3(events / min(log_times)),
        "replay_failures": failed,
        "errors": errors,
    }
    params = {
        "n": n,
        "concurrency": conc,
        "steps": k,
        "rounds": rounds,
        **engine_params(args),
    }
    return figures, params
