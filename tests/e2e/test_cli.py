"""The CLI as a user runs it: real processes, a real SQLite file, real signals."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.request import urlopen

import httpx
import orjson
import pytest

from eventflow.api.auth import read_pass
from eventflow.embedded.subscriptions import SubscriptionLog
from eventflow.events import (
    DatasetProduced,
    DeadLetter,
    DeadLetterData,
    Event,
    Payload,
    PipelineRunSucceeded,
    TaskSucceeded,
    TaskSucceededData,
    decode,
)

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
PIPELINES = HERE / "pipelines"
P = TypeVar("P", bound=Payload)
HELLO = ROOT / "examples" / "hello.py"

pytestmark = pytest.mark.slow


def env(home: Path) -> dict[str, str]:
    """The embedded runtime only: no setting leaks in from the caller's environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    # Any free port for the API: instances of parallel tests must not meet.
    return {**clean, "EVENTFLOW_HOME": str(home), "EVENTFLOW_API_PORT": "0"}


def cli(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventflow", *args],
        env=env(home),
        capture_output=True,
        input=stdin.decode() if stdin is not None else None,
        text=True,
        timeout=60,
    )


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


@contextmanager
def dev(home: Path, file: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventflow", "dev", str(file), *args],
        env=env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (home / "dev.sock").exists() or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape(port: int) -> dict[str, float]:
    """The Prometheus text format, one `name{labels} value` per line."""
    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    lines = [line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#")]
    return {name: float(value) for name, value in lines}


def logged(home: Path, kind: type[Event[P]]) -> list[P]:
    """The payloads of the events of one kind in the instance's log, oldest first."""
    found = []
    with sqlite3.connect(home / "eventflow.db") as db:
        rows = db.execute("SELECT body FROM events WHERE type = ? ORDER BY seq", (kind.event_type,))
        for (body,) in rows:
            event = decode(body, max_metadata_bytes=1 << 30)
            assert isinstance(event, kind), event.type
            found.append(event.data)
    return found


def test_until_idle_prints_the_summary_and_exits_0(tmp_path: Path) -> None:
    done = cli(
        tmp_path,
        "dev",
        str(HELLO),
        "--emit",
        "greetings.requested",
        "--meta",
        "name=ada",
        "--until-idle",
    )
    assert done.returncode == 0, done.stderr
    assert "Pipeline runs: 1 (1 succeeded, 0 failed)" in done.stdout
    assert "polish  ok" in done.stdout
    assert "Hello ada!" in done.stderr  # the task's own log line


@pytest.mark.parametrize(("setting", "loop"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_dev_runs_on_the_event_loop_the_settings_name(
    tmp_path: Path, setting: str | None, loop: str
) -> None:
    chosen = {} if setting is None else {"EVENTFLOW_EVENT_LOOP": setting}
    command = ["dev", str(PIPELINES / "looped.py"), "--emit", "tick", "--until-idle"]
    done = subprocess.run(
        [sys.executable, "-m", "eventflow", *command],
        env={**env(tmp_path), **chosen},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (reported,) = [d for d in logged(tmp_path, DatasetProduced) if d.dataset == "loop.seen"]
    assert str(reported.metadata["loop"]).split(".")[0] == loop


def test_until_idle_exits_3_when_no_run_started(tmp_path: Path) -> None:
    """Nothing failed, nothing ran: not the success of a cascade that did its work."""
    done = cli(tmp_path, "dev", str(HELLO), "--until-idle")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "No pipeline run started." in done.stdout


def test_until_idle_exits_1_when_a_run_fails(tmp_path: Path) -> None:
    done = cli(tmp_path, "dev", str(PIPELINES / "failing.py"), "--emit", "raw", "--until-idle")
    assert done.returncode == 1
    assert "explode  FAILED" in done.stdout and "RuntimeError: disk full" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dev", "missing.py"], "error: no such pipeline file: missing.py"),
        (
            ["dev", str(PIPELINES / "cyclic.py")],
            "task 'forth': cycle in the graph: forth -> back -> forth",
        ),
        (["graph", str(PIPELINES / "cyclic.py")], "cycle in the graph"),
        (["emit", "raw"], "error: no eventflow dev instance at"),
        (["watch"], "error: no eventflow dev instance at"),
    ],
)
def test_user_mistakes_get_one_line_and_no_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = cli(tmp_path, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unknown_dataset_on_emit_flag_is_an_error(tmp_path: Path) -> None:
    done = cli(tmp_path, "dev", str(HELLO), "--emit", "nope", "--until-idle")
    assert done.returncode == 1
    assert "error: --emit nope: unknown dataset 'nope'" in done.stderr


def test_graph_prints_the_pipeline(tmp_path: Path) -> None:
    done = cli(tmp_path, "graph", str(ROOT / "examples" / "ml_pipeline.py"))
    assert done.returncode == 0
    assert "raw.trips, features.speed, features.time_of_day -> merge_features [all]" in done.stdout
    assert "check quality_gate on features.trips (blocking)" in done.stdout
    dot = cli(tmp_path, "graph", "--dot", str(HELLO))
    assert dot.stdout.startswith("digraph eventflow {")


def test_emit_watch_and_status_against_a_running_dev(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with dev(home, HELLO) as service:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "eventflow", "watch", "hello"],
            env=env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watcher.stderr is not None
            assert watcher.stderr.readline().startswith("watching ")
            sent = cli(home, "emit", "greetings.requested", "--meta", "name=grace", "-v", "42")
            assert sent.returncode == 0, sent.stderr
            assert sent.stdout.startswith("published ")
            assert "  router: routed to hello\n" in sent.stdout
            assert "  hello: requested draft in hello:-:1\n" in sent.stdout
            assert watcher.stdout is not None
            started = watcher.stdout.readline()
            finished = watcher.stdout.readline()
            assert "hello  -  running" in started
            assert "hello  -  ok" in finished
        finally:
            watcher.terminate()
            watcher.communicate(timeout=10)
        status = cli(home, "status")
        assert service.poll() is None
    assert status.returncode == 0
    assert "greetings.requested" in status.stdout and " 42 " in status.stdout
    assert "greetings.sent" in status.stdout
    assert "hello  -  ok" in status.stdout


def test_emit_says_when_nothing_happened_and_why(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with dev(home, HELLO):
        assert cli(home, "emit", "greetings.requested", "-v", "42").returncode == 0
        older = cli(home, "emit", "greetings.requested", "-v", "41")
        assert older.returncode == 3, older.stdout + older.stderr
        assert "router: version 41 is not newer than 42, already seen" in older.stdout
        typo = cli(home, "emit", "greetings.requsted")
        assert typo.returncode == 1
        assert typo.stderr == "error: dead-lettered: unknown dataset 'greetings.requsted'\n"
        unused = cli(home, "emit", "greetings.sent")
        assert unused.returncode == 3
        assert "router: no pipeline consumes greetings.sent" in unused.stdout


def test_malformed_input_lands_in_the_dead_letter_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    good = {
        "specversion": "1.0",
        "id": "1",
        "source": "spark",
        "type": "eventflow.dataset.produced",
    }
    cases = {
        b"{this is not json": "not JSON",
        orjson.dumps(
            {**good, "data": {"dataset": "greetings.requested"}}
        ): "data.version: Field required",
        orjson.dumps({**good, "data": {"dataset": "nope", "version": 1}}): "unknown dataset 'nope'",
        orjson.dumps(
            {
                **good,
                "data": {
                    "dataset": "greetings.requested",
                    "version": 1,
                    "metadata": {"rows": "x" * 70_000},
                },
            }
        ): "over the 65536-byte limit",
    }
    port = free_port()
    with dev(home, HELLO, "--metrics-port", str(port)) as service:
        for raw, reason in cases.items():
            sent = cli(home, "emit", "--raw", "-", stdin=raw)
            assert sent.returncode == 1
            assert reason in sent.stderr and "Traceback" not in sent.stderr
        big = cli(home, "emit", "greetings.requested", "--meta", "blob=" + "y" * 70_000)
        assert big.returncode == 1 and "over the 65536-byte limit" in big.stderr
        assert "Traceback" not in big.stderr
        assert service.poll() is None, "the service keeps running"
        ok = cli(home, "emit", "greetings.requested")
        assert ok.returncode == 0
        wait_for(lambda: len(logged(home, PipelineRunSucceeded)) == 1)
        metrics = scrape(port)
    assert metrics["eventflow_dead_letters_total"] == 5
    assert metrics['eventflow_task_runs_total{outcome="succeeded"}'] == 3
    assert metrics['eventflow_events_decided_total{type="eventflow.dataset.produced"}'] == 4
    assert metrics['eventflow_coordinator_step_seconds_count{phase="commit"}'] >= 4
    letters = logged(home, DeadLetter)
    assert len(letters) == 5
    assert "over the 65536-byte limit" in letters[4].reason
    for letter, (raw, reason) in zip(letters, cases.items(), strict=False):
        assert isinstance(letter, DeadLetterData)
        assert reason in letter.reason
        assert raw.startswith(letter.original_bytes) and len(letter.original_bytes) <= 4096
        assert letter.truncated == (len(raw) > 4096)
        assert (letter.size, letter.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())


@pytest.mark.parametrize("kill_after", [0, 1, 2, 3, 4, 5])
def test_sigkill_mid_cascade_then_restart_finishes_it(tmp_path: Path, kill_after: int) -> None:
    """Killed after `kill_after` committed task results, then restarted: every task has exactly
    one recorded success, and no task whose success was recorded runs again."""
    home, journal = tmp_path / "home", tmp_path / "journal.txt"
    journal.touch()
    pipeline = PIPELINES / "journaled.py"
    with dev(home, pipeline) as first:
        # Bodies of 0.4 s: the kill lands mid-cascade even when polling the log is slow.
        meta = ("--meta", f"journal={journal}", "--meta", "pause=0.4")
        sent = cli(home, "emit", "raw", "-p", "2026-11-22", *meta)
        assert sent.returncode == 0, sent.stderr
        wait_for(lambda: len(logged(home, TaskSucceeded)) >= kill_after)
        first.kill()
    done_before = {d.task for d in logged(home, TaskSucceeded)}
    assert len(done_before) >= kill_after

    again = cli(home, "dev", str(pipeline), "--until-idle")
    if len(done_before) < 6:
        assert again.returncode == 0, again.stdout + again.stderr
        assert "journaled  2026-11-22  ok" in again.stdout
    else:  # the cascade outran the kill (a loaded machine): the restart has nothing to run
        assert again.returncode == 3, again.stdout + again.stderr

    successes = logged(home, TaskSucceeded)
    assert all(isinstance(s, TaskSucceededData) for s in successes)
    counts = Counter(s.task for s in successes)
    assert counts == Counter(["extract", "clean", "left", "right", "join", "publish"])
    restarted = [line.split() for line in journal.read_text().splitlines()]
    pids = list(dict.fromkeys(pid for pid, _, _, _ in restarted))
    rerun = {task for pid, what, task, _ in restarted if pid == pids[-1] and what == "start"}
    assert not rerun & done_before, f"completed tasks ran again: {rerun & done_before}"
    assert len(logged(home, PipelineRunSucceeded)) == 1


def test_a_watcher_that_hangs_up_is_dropped_quietly(tmp_path: Path) -> None:
    """A watcher that closes with events unread resets the connection; the next event's write
    meets a closed stream (uvloop raises there). That is a disconnection like any other, not an
    error to log."""
    home = tmp_path / "home"
    with dev(home, HELLO) as service:
        with socket.socket(socket.AF_UNIX) as watcher:
            watcher.settimeout(20)
            watcher.connect(str(home / "dev.sock"))
            watcher.sendall(b'{"op": "watch"}\n')
            with watcher.makefile("rb") as lines:
                assert lines.readline() == b'{"ok": true}\n'
            sent = cli(home, "emit", "greetings.requested", "--meta", "name=ada", "-v", "1")
            assert sent.returncode == 0, sent.stderr
            assert watcher.recv(1, socket.MSG_PEEK)  # events wait unread as it closes
        for version in ("2", "3"):
            sent = cli(home, "emit", "greetings.requested", "--meta", "name=ada", "-v", version)
            assert sent.returncode == 0, sent.stderr
        wait_for(lambda: len(logged(home, PipelineRunSucceeded)) == 3)
        service.send_signal(signal.SIGINT)
        _, stderr = service.communicate(timeout=20)
    assert service.returncode == 0
    assert "Traceback" not in stderr, stderr


def test_watch_refuses_typos_and_replays_in_time_order_until_caught_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with dev(home, HELLO) as service:
        typo = cli(home, "watch", "helo")
        assert typo.returncode == 2
        assert typo.stderr == "error: no pipeline 'helo'; did you mean hello?\n"
        dataset = cli(home, "watch", "--dataset", "greetings.requsted")
        assert dataset.returncode == 2
        assert dataset.stderr.endswith("; did you mean greetings.requested?\n")
        far = cli(home, "watch", "--dataset", "zzz")
        assert (
            far.stderr
            == "error: no dataset 'zzz'; datasets: "
            + ", ".join(
                sorted(
                    [
                        "greetings.requested",
                        "greetings.drafted",
                        "greetings.polished",
                        "greetings.sent",
                    ]
                )
            )
            + "\n"
        )
        for version in ("1", "2"):
            sent = cli(home, "emit", "greetings.requested", "--meta", "name=ada", "-v", version)
            assert sent.returncode == 0, sent.stderr

        def replay(*args: str) -> list[str]:
            done = cli(home, "watch", "--from-beginning", "--until-caught-up", *args)
            assert done.returncode == 0, done.stderr
            return done.stdout.splitlines()

        wait_for(lambda: sum("hello  -  ok" in line for line in replay("hello")) == 2)
        events = [orjson.loads(line) for line in replay("--all", "--json")]
        times = [e["time"] for e in events]
        assert times == sorted(times), "a replay prints in event-time order"
        assert {"eventflow.dataset.produced", "eventflow.task.succeeded"} <= {
            e["type"] for e in events
        }
        assert [e["type"] for e in events].count("eventflow.pipeline.run.succeeded") == 2
        outputs = replay("--kind", "dataset", "--dataset", "greetings.sent")
        assert len(outputs) == 2 and all("greetings.sent" in line for line in outputs)
        service.send_signal(signal.SIGINT)
        _, stderr = service.communicate(timeout=20)
    assert service.returncode == 0
    assert "Traceback" not in stderr and "CancelledError" not in stderr, stderr


def test_external_publisher_and_completion_subscriber_examples(tmp_path: Path) -> None:
    home = tmp_path / "home"
    examples = ROOT / "examples"
    with dev(home, examples / "ml_pipeline.py"):
        subscriber = subprocess.Popen(
            [
                sys.executable,
                str(examples / "subscriber.py"),
                "nightly_features",
                "--state",
                str(tmp_path / "notifier.db"),
            ],
            env=env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert subscriber.stdout is not None
            assert subscriber.stdout.readline() == "waiting for pipeline runs\n"
            published = subprocess.run(
                [sys.executable, str(examples / "publisher.py"), "2026-11-20"],
                env=env(home),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert published.returncode == 0, published.stderr
            assert published.stdout.startswith("announced raw.trips@2026-11-20 version ")
            line = subscriber.stdout.readline()
        finally:
            subscriber.terminate()
            subscriber.communicate(timeout=10)
    assert line.startswith("nightly_features 2026-11-20 succeeded: compute_speed=succeeded")
    assert "deploy_model=succeeded" in line and "flag_regression=skipped" in line


def test_demo_runs_the_ml_cascade_end_to_end_and_leaves_nothing_behind() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ml_pipeline.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    work = Path(done.stdout.split("files and state in ", 1)[1].split()[0])
    assert not work.exists(), "the demo's files are removed when it ends"
    kept = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ml_pipeline.py"), "--keep"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    work = Path(kept.stdout.split("files and state in ", 1)[1].split()[0])
    try:
        assert kept.returncode == 0 and (work / ".eventflow" / "eventflow.db").exists()
        [notified] = work.glob("*/NOTIFIED.txt")
        assert ": deployed a new model (rmse " in notified.read_text()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for line in (
        "compute_speed        ok",
        "merge_features       ok",
        "train_model          ok",
        "evaluate_model       ok               -> model.approved",
        "deploy_model         ok               -> model.deployed",
        "notify               ok",
        "flag_regression      skipped",
        "quality_gate passed",
    ):
        assert line in done.stdout


def test_demo_with_ui_serves_the_cascade_until_ctrl_c_then_removes_its_files(
    tmp_path: Path,
) -> None:
    out = tmp_path / "demo.out"
    with open(out, "w") as sink:
        demo = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "ml_pipeline.py"), "--ui"],
            env={**env(tmp_path / "unused"), "EVENTFLOW_API_PORT": "0"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "Ctrl-C stops" in out.read_text() or demo.poll() is not None, 120)
        printed = out.read_text()
        assert demo.poll() is None, printed
        address = printed.split("web UI: ", 1)[1].split()[0]
        base, token = address.split("/ui/login#token=")
        page = httpx.get(f"{base}/ui/events", cookies={"eventflow_token": read_pass(token)})
        assert page.status_code == 200 and "eventflow.pipeline.run.succeeded" in page.text
        work = Path(printed.split("files and state in ", 1)[1].split()[0])
        assert work.is_dir()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    assert demo.returncode == 0, out.read_text()
    assert not work.exists()


def test_sigterm_stops_dev_gracefully(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with dev(home, HELLO) as service:
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=20)
    assert service.returncode == 0, err
    assert "Traceback" not in err
    assert not (home / "dev.sock").exists()
    again = cli(home, "emit", "greetings.requested")
    assert again.returncode == 2 and "no eventflow dev instance" in again.stderr


def test_sigterm_stops_dev_with_exit_0_after_a_failed_run(tmp_path: Path) -> None:
    """A failed run is the run's outcome, not the long-running instance's: stopped by a
    signal, it exits 0 (only `--until-idle` reports runs in its exit status)."""
    home = tmp_path / "home"
    with dev(home, PIPELINES / "failing.py") as service:
        assert cli(home, "emit", "raw").returncode == 0
        wait_for(lambda: "failing  -  FAILED" in cli(home, "status").stdout)
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=20)
    assert service.returncode == 0, err
    assert "disk full" in err


def test_a_dead_processing_loop_ends_dev_with_exit_1_and_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with dev(home, PIPELINES / "sabotaged.py") as service:
        assert cli(home, "emit", "raw").returncode == 0, "the instance works until then"
        sent = cli(home, "emit", "poison")  # its publish fails instead of hanging
        assert sent.returncode == 2
        assert "error: not published: the eventflow instance stopped processing" in sent.stderr
        assert "RuntimeError: a defect in the store" in sent.stderr
        _out, err = service.communicate(timeout=20)  # the process ends on its own
    assert service.returncode == 1, err
    assert err.strip().splitlines()[-1] == (
        "error: eventflow dev failed: RuntimeError: a defect in the store"
    )
    assert not (home / "dev.sock").exists()


def test_a_dead_processing_loop_fails_until_idle_with_exit_1(tmp_path: Path) -> None:
    done = cli(tmp_path, "dev", str(PIPELINES / "sabotaged.py"), "--emit", "poison", "--until-idle")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "error: eventflow dev failed: RuntimeError: a defect in the store"
    assert "Pipeline runs" not in done.stdout


@pytest.mark.parametrize("given", [None, "operators-own-token-0123456789"])
def test_dev_ui_prints_a_sign_in_link_but_never_the_operators_token(
    tmp_path: Path, given: str | None
) -> None:
    """A token `dev` made up is in the link it prints (only its own terminal saw it); the
    operator's EVENTFLOW_API_TOKEN is never printed."""
    home, out = tmp_path / "home", tmp_path / "dev.out"
    extra = {"EVENTFLOW_API_TOKEN": given} if given else {}
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eventflow", "dev", str(HELLO), "--ui"],
            env={**env(home), **extra},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "web UI: " in out.read_text() or proc.poll() is not None, 60)
        printed = out.read_text()
        token = orjson.loads((home / "api.json").read_bytes())["token"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    link = printed.split("web UI: ", 1)[1].splitlines()[0]
    if given is None:
        assert link.endswith(f"/ui/login#token={token}"), printed
    else:
        assert token == given and given not in printed
        assert link.endswith("/ui/login (sign in with EVENTFLOW_API_TOKEN)"), printed


def test_dev_says_when_a_dataset_is_late_and_when_it_is_on_time_again(tmp_path: Path) -> None:
    late = ROOT / "tests" / "ui" / "late.py"
    home, out = tmp_path / "home", tmp_path / "dev.err"
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eventflow", "dev", str(late)],
            env=env(home),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        wait_for(lambda: "late: feed has had no new version" in out.read_text(), 60)
        assert cli(home, "emit", "feed").returncode == 0
        wait_for(lambda: "on time again: feed" in out.read_text(), 60)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_durable_subscriptions_are_listed_and_an_abandoned_one_forgotten(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert (
        cli(home, "dev", str(HELLO), "--emit", "greetings.requested", "--until-idle").returncode
        == 0
    )

    async def keep() -> None:
        log = SubscriptionLog(home / "eventflow.db")
        await log.start()
        try:
            await log.store("mailer", 2)
        finally:
            await log.stop()

    asyncio.run(keep())
    listed = cli(home, "subscriptions", "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [line.split() for line in listed.stdout.splitlines() if line.startswith("mailer")]
    assert row[1] == "2" and int(row[2]) > 0, listed.stdout  # behind the log's end
    assert cli(home, "subscriptions", "forget", "mailer").returncode == 0
    assert cli(home, "subscriptions", "list").stdout.strip() == "No durable subscription."
    again = cli(home, "subscriptions", "forget", "mailer")
    assert again.returncode == 2 and "no durable subscription 'mailer'" in again.stderr
