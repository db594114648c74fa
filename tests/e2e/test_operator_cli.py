"""The operator's commands against a running `eventflow dev`, as processes: every command with
and without --json, each action and its effect as the other commands show it, and the history
store rebuilt from the event log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from .test_cli import PIPELINES, cli, dev, env, wait_for

pytestmark = pytest.mark.slow

OPERATED = PIPELINES / "operated.py"
D = "2026-11-20"


def ok(home: Path, *args: str) -> str:
    done = cli(home, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def js(home: Path, *args: str) -> Any:
    return orjson.loads(ok(home, *args, "--json"))


def runs(home: Path, *args: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = js(home, "runs", *args)["items"]
    return found


def finished(home: Path, count: int, pipeline: str = "ops") -> list[dict[str, Any]]:
    """Waits until `pipeline` has `count` runs, none running; newest first."""

    def done() -> bool:
        found = runs(home, "--pipeline", pipeline)
        return len(found) == count and all(r["status"] != "running" for r in found)

    wait_for(done, timeout=30)
    return runs(home, "--pipeline", pipeline)


# About 70 commands, each a process that takes over a second to import eventflow: 90-100 s alone
# on this machine, more beside other tests. Each command has its own 60 s limit.
@pytest.mark.timeout(300)
def test_every_command_and_action_against_a_dev_instance(tmp_path: Path) -> None:
    home, release = tmp_path / "home", tmp_path / "release"
    with dev(home, OPERATED) as service:
        wait_for(lambda: (home / "api.json").exists())
        empty = ok(home, "status")
        assert "No dataset has been produced yet." in empty and "No pipeline run yet." in empty
        ok(home, "emit", "raw", "-p", D, "-v", "5")
        [first] = finished(home, 1)

        # status, runs, run, logs, explain, lineage: text and JSON
        status = ok(home, "status")
        assert status.startswith("Datasets\n")
        assert ["raw", D, "5"] in [line.split()[:3] for line in status.splitlines()]
        assert f"Recent runs\nops  {D}  ok  " in status
        assert js(home, "status")["runs"][0]["run_id"] == first["run_id"] == f"ops:{D}:1"
        # --runs 0 leaves the runs out rather than saying there are none
        assert "Recent runs" not in (quiet := ok(home, "status", "--runs", "0"))
        assert "No pipeline run" not in quiet and "runs" not in js(home, "status", "--runs", "0")
        table = ok(home, "runs")
        assert f"ops       {D}  ok" in table and "1 of 1 runs" in table
        assert "No pipeline run matches." in ok(home, "runs", "--pipeline", "held")
        assert runs(home, "--status", "failed") == []
        assert len(runs(home, "--since", "1h", "--partition", D)) == 1
        detail = js(home, "run", first["run_id"])
        [tidy] = detail["attempts"]
        assert (tidy["task"], tidy["status"], tidy["inputs"][0]["version"]) == (
            "tidy",
            "succeeded",
            5,
        )
        shown = ok(home, "run", first["run_id"])
        assert "tidy  1        succeeded" in shown and tidy["run_id"] in shown
        assert f"tidy #1  raw@{D}:5" in shown, "the inputs it consumed"
        assert ok(home, "run", tidy["run_id"]) == shown, "an attempt's id finds its run"
        logged = ok(home, "logs", tidy["run_id"])
        assert logged.splitlines()[1].endswith(f"INFO     tidying {D}")
        assert ok(home, "logs", first["run_id"]) == logged, "a run's id: every attempt's log"
        [line] = js(home, "logs", tidy["run_id"])[tidy["run_id"]]
        assert line["message"] == f"tidying {D}"
        explained = ok(home, "explain", "ops", "join", D).splitlines()
        assert explained[0] == f"ops.join in {D}: waiting: waiting for extra"
        assert any(x.startswith("  ✗ input extra: nothing new") for x in explained)
        assert any(x.startswith("  ✓ input clean: newer than last consumed") for x in explained)
        assert js(home, "explain", "ops", "join", D)["status"] == "waiting"
        up = ok(home, "lineage", "clean", D)
        assert f"by tidy #1 ({tidy['run_id']})" in up.splitlines()[0]
        assert f"upstream\n  └─ raw@{D}:5  " in up
        down = js(home, "lineage", "raw", D, "--version", "5")
        assert down["downstream"][0]["attempt"]["run_id"] == tidy["run_id"]

        # pause: kept, not run; resume: decided once
        paused = ok(home, "pause", "ops", "--reason", "db down", "--operator", "ada")
        assert paused.startswith("pause ops: applied (")
        again = cli(home, "pause", "ops", "--reason", "again")
        assert again.returncode == 1 and "refused: pipeline 'ops' is already paused" in again.stderr
        kept = cli(home, "emit", "raw", "-p", D, "-v", "6")
        assert kept.returncode == 3, kept.stdout + kept.stderr  # nothing happened: paused
        assert "  ops: tidy: waiting for resume (paused by ada)\n" in kept.stdout
        wait_for(lambda: "latest version 6" in ok(home, "explain", "ops", "tidy", D))
        held = ok(home, "explain", "ops", "tidy", D).splitlines()
        assert held[0] == f"ops.tidy in {D}: waiting: waiting for resume (paused by ada)"
        assert held[1].startswith("  ✗ pipeline paused: paused by ada") and "db down" in held[1]
        assert len(runs(home, "--pipeline", "ops")) == 1, "nothing runs while paused"
        assert js(home, "resume", "ops", "--reason", "back")["status"] == "applied"
        second = finished(home, 2)[0]
        [resumed] = js(home, "run", second["run_id"])["attempts"]
        assert [i["version"] for i in resumed["inputs"]] == [6]

        # rerun a task on the versions it last consumed; refusals exit 1
        rerun = ok(home, "rerun", "ops", D, "--task", "tidy", "--reason", "fix", "--operator", "bo")
        assert rerun.startswith(f"rerun ops {D} tidy: applied (")
        third = finished(home, 3)[0]
        assert "task 'tidy' rerun by bo: fix" in third["reason"]
        [again_tidy] = js(home, "run", third["run_id"])["attempts"]
        assert again_tidy["run_id"] != resumed["run_id"]
        assert [i["version"] for i in again_tidy["inputs"]] == [6]
        never = cli(home, "rerun", "ops", "2026-11-21", "--reason", "x")
        assert never.returncode == 1 and "never ran in partition '2026-11-21'" in never.stderr

        page = js(home, "runs", "--limit", "2")
        assert [r["run_id"] for r in page["items"]] == [third["run_id"], second["run_id"]]
        assert f"2 of 3 runs; next page: --cursor {page['next_cursor']}" in ok(
            home, "runs", "--limit", "2"
        )
        rest = runs(home, "--limit", "2", "--cursor", page["next_cursor"])
        assert [r["run_id"] for r in rest] == [first["run_id"]]
        bogus = cli(home, "runs", "--cursor", "bogus")
        assert bogus.returncode == 2 and "error: not a cursor of this query" in bogus.stderr

        # cancel a running run, its log followed meanwhile
        ok(home, "emit", "gate", "-p", D, "--meta", f"release={release}")
        wait_for(lambda: any(a["status"] == "running" for a in _attempts(home, "held")))
        [hold] = _attempts(home, "held")
        follow = subprocess.Popen(
            [sys.executable, "-m", "eventflow", "logs", "--follow", hold["run_id"]],
            env=env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert follow.stdout is not None
            assert f"holding until {release} exists" in follow.stdout.readline()
            cancelled = ok(home, "cancel", "held", D, "--reason", "wrong input")
            assert cancelled.startswith(f"cancel held {D}: applied (")
            _out, err = follow.communicate(timeout=30)  # ends with the attempt
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.communicate()
        assert follow.returncode == 0, err
        [stopped] = finished(home, 1, "held")
        assert stopped["status"] == "failed"
        assert f"cancelled by {_user()}: wrong input" in stopped["reason"]
        release.touch()
        nothing = cli(home, "cancel", "held", D, "--reason", "again")
        assert nothing.returncode == 1 and nothing.stderr.startswith("refused: ")

        busy = cli(home, "history", "rebuild")
        assert busy.returncode == 2 and "is running in" in busy.stderr
        live = _answers(home)
        assert service.poll() is None

    gone = cli(home, "status")
    assert gone.returncode == 2 and "start `eventflow dev FILE`" in gone.stderr
    assert len(gone.stderr.splitlines()) == 1
    (home / "history.db").unlink()
    rebuilt = ok(home, "history", "rebuild")
    assert rebuilt.startswith("history rebuilt from ") and "events of" in rebuilt
    with dev(home, OPERATED):
        wait_for(lambda: (home / "api.json").exists())
        assert _answers(home) == live


def _attempts(home: Path, pipeline: str) -> list[dict[str, Any]]:
    return [
        a
        for r in runs(home, "--pipeline", pipeline)
        for a in js(home, "run", r["run_id"])["attempts"]
    ]


def _user() -> str:
    import getpass

    return getpass.getuser()


def _answers(home: Path) -> dict[str, Any]:
    """What the history answers, but for ages (which move with the clock)."""
    every = runs(home, "--limit", "1000")
    return {
        "runs": every,
        "details": [js(home, "run", r["run_id"]) for r in every],
        "lineage": js(home, "lineage", "raw", D, "--version", "5"),
        "logs": js(home, "logs", f"ops:{D}:1"),
    }
