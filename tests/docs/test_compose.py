"""docker-compose.yml stays correct without a Docker engine (there is none on our machines):
its structure is checked against what the images and Docket expect, and the commands it
runs are checked against Docket's own CLI and app loading."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click
import yaml

from docket.cli import main
from docket.cli_input import load_app

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def docket_args(service: dict[str, Any]) -> list[str]:
    """The `docket ...` command a service runs (after its `pip install` of the checkout)."""
    command = service["command"]
    assert command[:2] == ["sh", "-c"], command
    script = command[2]
    install, _, run = script.partition("&&")
    assert install.split()[:3] == ["pip", "install", "-q"] and "/src" in install
    words = shlex.split(run)
    assert words[:2] == ["exec", "docket"], run
    return words[2:]


def test_kafka_runs_in_kraft_mode_with_a_healthcheck() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    controller = next(x for x in env["KAFKA_LISTENERS"].split(",") if x.startswith("CONTROLLER://"))
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:{controller.rsplit(':', 1)[1]}"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert {"CONTROLLER", "PLAINTEXT"} <= set(protocols)
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[key] == 1, f"{key}: one broker can hold one replica"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_docket_services_reach_kafka_and_wait_for_it() -> None:
    services = compose()["services"]
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    address = advertised.split("://", 1)[1]
    for name in ("processor", "worker"):
        service = services[name]
        env = service["environment"]
        assert env["DOCKET_BOOTSTRAP_SERVERS"] == address, name
        assert env["DOCKET_DATA_DIR"] and env["DOCKET_NAMESPACE"]
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name
        assert service["healthcheck"]["test"], name


def test_the_commands_are_valid_docket_commands_for_a_real_app() -> None:
    services = compose()["services"]
    roles = {}
    for name in ("processor", "worker"):
        args = docket_args(services[name])
        with main.make_context("docket", list(args)) as ctx:  # parses, as the CLI would
            sub = main.get_command(ctx, args[0])
            assert isinstance(sub, click.Command)
            sub_ctx = sub.make_context(args[0], list(args[1:]), parent=ctx)
            roles[name] = (args[0], sub_ctx.params)
        load_app(sub_ctx.params["app_spec"])  # the app the service runs exists
    assert roles["processor"][0] == "run" and roles["processor"][1]["with_worker"] is False
    assert roles["worker"][0] == "worker"
    assert roles["processor"][1]["app_spec"] == roles["worker"][1]["app_spec"]
    health = services["processor"]["healthcheck"]["test"]
    assert health[:2] == ["CMD", "docket"]
    with main.make_context("docket", list(health[2:])):
        pass  # the healthcheck is a valid command too
