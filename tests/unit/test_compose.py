"""docker-compose.yml runs commands the CLI has, with settings the settings object accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from eventflow.cli import cli
from eventflow.settings import Settings

ROOT = Path(__file__).parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def eventflow_services() -> dict[str, Any]:
    return {name: svc for name, svc in SERVICES.items() if svc.get("build") == "."}


def test_services_and_dependencies() -> None:
    assert {"kafka", "topics", "coordinator", "worker"} <= set(SERVICES)
    assert SERVICES["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("coordinator", "worker"):
        assert SERVICES[name]["depends_on"]["topics"]["condition"] == (
            "service_completed_successfully"
        )
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2


def test_health_checks_watch_what_the_services_write() -> None:
    assert "kafka-broker-api-versions" in " ".join(SERVICES["kafka"]["healthcheck"]["test"])
    for name in ("coordinator", "worker"):
        command = SERVICES[name]["command"]
        health_file = command[command.index("--health-file") + 1]
        assert health_file in " ".join(SERVICES[name]["healthcheck"]["test"])


def test_commands_exist_in_the_cli() -> None:
    for name, svc in eventflow_services().items():
        if "entrypoint" in svc:
            script = ROOT / svc["entrypoint"][1]
            assert script.is_file(), f"{name}: {script} missing"
            continue
        words = list(svc["command"])
        group: click.Command = cli
        while isinstance(group, click.Group) and words and words[0] in group.commands:
            group = group.commands[words.pop(0)]
        assert not isinstance(group, click.Group), f"{name}: no such command {svc['command']}"
        known = {opt for p in group.params for opt in getattr(p, "opts", [])}
        for word in words:
            if word.startswith("--"):
                assert word in known, f"{name}: {group.name} has no option {word}"
        if "--app" in words:
            assert (ROOT / words[words.index("--app") + 1]).is_file()


def test_environment_names_are_settings() -> None:
    fields = {f"EVENTFLOW_{name.upper()}" for name in Settings.model_fields}
    for name, svc in eventflow_services().items():
        for key in svc.get("environment", {}):
            assert key in fields, f"{name}: {key} is not a setting"
        assert svc["environment"]["EVENTFLOW_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "EVENTFLOW_KAFKA_BOOTSTRAP" in fields


def test_the_image_ships_the_example() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY examples ./examples" in dockerfile and 'ENTRYPOINT ["eventflow"]' in dockerfile
