"""`docket audit export`: the history topic read from its beginning, one JSON line per run;
on the embedded log and on Kafka (a Tansu broker per test), with no engine running."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from user_topics_app import app, backend, collector, emitter  # noqa: F401

import docket
from docket.audit import export_audit, load_audit, parse_time
from docket.config import Settings
from docket.errors import WorkflowFailedError
from docket.log.base import OutRecord
from docket.log.factory import open_log
from docket.log.topics import Topics
from docket.replay import event_to_json, replay_history

DOCKET = [sys.executable, "-m", "docket.cli"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, with this test's DOCKET_* settings."""
    return subprocess.run([*DOCKET, *args], env=dict(os.environ), capture_output=True, text=True,
                          timeout=60)


async def _run_a_few() -> dict[str, list[str]]:
    """A completed, a failed and a running workflow; returns each one's history as lines."""
    async with docket.Engine(app) as engine:
        client = engine.client
        done = await client.start(emitter, 1, workflow_id="done")
        await done.signal("next")
        await done.result(timeout=30)
        failed = await client.start("bad_emitter", "docket.x", workflow_id="failed")
        with pytest.raises(WorkflowFailedError):
            await failed.result(timeout=30)
        running = await client.start(collector, 2, workflow_id="running")
        await running.signal("note", "one")
        return {
            wid: [event_to_json(e) for e in client._reader.history(wid)]
            for wid in ("done", "failed", "running")
        }


@pytest.mark.usefixtures("backend")
async def test_every_run_is_exported_with_its_whole_history(tmp_path: Path) -> None:
    histories = await _run_a_few()
    out = tmp_path / "audit.jsonl"
    # no engine runs now: the export reads the history topic only
    result = cli("audit", "export", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"exported 3 runs to {out}\n"
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["workflow_id"] for line in lines] == ["done", "failed", "running"]  # start order
    by_id = {line["workflow_id"]: line for line in lines}
    assert [by_id[w]["status"] for w in ("done", "failed", "running")] == [
        "completed", "failed", "running"]
    assert {line["workflow_type"] for line in lines} == {"emitter", "bad_emitter", "collector"}
    assert by_id["done"]["closed_at"] and by_id["running"]["closed_at"] is None
    assert list(by_id["done"]) == ["workflow_id", "run_id", "workflow_type", "status", "started_at",
                                   "closed_at", "events"]
    for wid, history in histories.items():  # the very events `workflow history --json` prints
        assert [json.dumps(e, sort_keys=True) for e in by_id[wid]["events"]] == history
    for run in load_audit(out):  # and they replay against the app's code
        assert replay_history(app, run.events).ok
    assert cli("audit", "export").stdout == out.read_text()  # stdout by default


@pytest.mark.usefixtures("backend")
async def test_duplicates_in_the_log_are_exported_once() -> None:
    await _run_a_few()
    log = open_log(Settings.from_env(), create=False)
    try:
        topic = Topics(log.namespace).history
        copies = [r for p in range(log.partitions) for r in log.read(topic, p, 0, 1000)
                  if r.key == "done"]
        log.append([OutRecord(topic, r.partition, r.key, r.value) for r in copies[1:3]])
    finally:
        log.close()
    out = [json.loads(line) for line in cli("audit", "export", "--workflow", "done").stdout.splitlines()]
    assert len(out) == 1
    ids = [e["event_id"] for e in out[0]["events"]]
    assert ids == list(range(1, len(copies) + 1))


@pytest.mark.usefixtures("backend")
async def test_since_keeps_the_runs_active_since_then(tmp_path: Path) -> None:
    async with docket.Engine(app) as engine:
        client = engine.client
        early = await client.start(emitter, 1, workflow_id="early")
        await early.signal("next")
        await early.result(timeout=30)
        waiting = await client.start(collector, 1, workflow_id="spanning")
        await asyncio.sleep(1.2)
        between = datetime.now(UTC)
        await asyncio.sleep(0.2)
        await waiting.signal("note", "late")  # an event after `between` for a run begun before
        assert await waiting.result(timeout=30) == ["late"]
        late = await client.start(emitter, 1, workflow_id="late")
        await late.signal("next")
        await late.result(timeout=30)
    since = cli("audit", "export", "--since", between.isoformat())
    assert since.returncode == 0, since.stderr
    lines = [json.loads(line) for line in since.stdout.splitlines()]
    assert [line["workflow_id"] for line in lines] == ["spanning", "late"]
    assert lines[0]["events"][0]["body"][0] == "WorkflowStarted"  # its whole history
    assert len(cli("audit", "export", "--since", "1h").stdout.splitlines()) == 3
    assert cli("audit", "export", "--since", "2999-01-01").stdout == ""
    assert export_audit(tmp_path / "a.jsonl", since=between, workflow_id="early") == 0


async def test_bad_input_gets_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKET_DATA_DIR", str(tmp_path / "data"))
    async with docket.Engine(app) as engine:
        await engine.client.start(collector, 1, workflow_id="present")
    bad_time = cli("audit", "export", "--since", "yesterday")
    assert bad_time.returncode == 2
    assert bad_time.stderr == (
        "error: --since: 'yesterday' is not a time: use ISO 8601 (2026-05-01T12:00:00Z, "
        "2026-05-01) or a duration before now (90s, 30m, 2h, 7d, 1w, 1h30m)\n")
    unknown = cli("audit", "export", "--workflow", "absent")
    assert unknown.returncode == 1
    assert unknown.stderr == ("error: no history for workflow_id='absent' in docket.default.history: "
                              "check the ID and the namespace (--namespace, DOCKET_NAMESPACE)\n")
    nowhere = subprocess.run([*DOCKET, "--data-dir", str(tmp_path / "nowhere"), "audit", "export"],
                             capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")})
    assert nowhere.returncode == 1 and nowhere.stderr.startswith("error: no Docket data at ")
    assert len(nowhere.stderr.splitlines()) == 1


def test_times_are_iso_8601_or_a_duration_ago() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_time("2h", now=now) == now - timedelta(hours=2)
    assert parse_time("1h30m", now=now) == now - timedelta(minutes=90)
    assert parse_time("7d", now=now) == now - timedelta(days=7)
    assert parse_time("90s", now=now) == now - timedelta(seconds=90)
    assert parse_time("2026-05-01T10:00:00Z") == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert parse_time("2026-05-01") == datetime(2026, 5, 1, tzinfo=UTC)  # no zone: UTC
    assert parse_time("2026-05-01T12:00:00+02:00") == datetime(2026, 5, 1, 10, tzinfo=UTC)
    for bad in ("", "2x", "h2", "1h 30m", "soon"):
        with pytest.raises(ValueError, match="is not a time"):
            parse_time(bad, now=now)
