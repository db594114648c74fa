"""`EVENTFLOW_LOG_FORMAT=json`: a dev process whose every stderr line is a JSON object, the
lines of each task attempt naming its run and the trace its spans (printed by the console
exporter) are in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.slow

PIPELINE = """
import sys

import eventflow as ef

raw, mid, out = ef.Dataset("raw"), ef.Dataset("mid"), ef.Dataset("out")
p = ef.Pipeline("chain")


@p.task(inputs=[raw], outputs=[mid])
async def first(ctx: ef.TaskContext) -> None:
    ctx.log.info("first ran")
    ctx.emit(mid)


@p.task(inputs=[mid], outputs=[out])
def second(ctx: ef.TaskContext) -> None:
    print("second printed", file=sys.stderr)
    ctx.log.warning("second ran")
    ctx.emit(out)


app = ef.App([p])
"""


def console_spans(stdout: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed (indented JSON objects), past the run lines."""
    decoder = json.JSONDecoder()
    text = stdout[stdout.index("\n{") + 1 :]
    spans, at = [], 0
    while at < len(text):
        span, at = decoder.raw_decode(text, at)
        spans.append(span)
        while at < len(text) and text[at].isspace():
            at += 1
    return spans


def test_every_stderr_line_is_json_and_a_tasks_lines_name_its_run_and_trace(
    tmp_path: Path,
) -> None:
    app = tmp_path / "chain.py"
    app.write_text(PIPELINE)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTFLOW_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-m", "eventflow", "dev", str(app), "--emit", "raw", "--until-idle"],
        env={
            **clean,
            "EVENTFLOW_HOME": str(tmp_path / "home"),
            "EVENTFLOW_API_PORT": "0",
            "EVENTFLOW_LOG_FORMAT": "json",
            "EVENTFLOW_LOG_LEVEL": "INFO",
            "EVENTFLOW_OTEL": "true",
            "OTEL_TRACES_EXPORTER": "console",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in done.stderr.splitlines()]
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    tasks = {
        s["attributes"]["eventflow.task"]: s
        for s in console_spans(done.stdout)
        if s["name"] == "task"
    }
    assert set(tasks) == {"first", "second"}
    ran = {line["message"]: line for line in lines if "run_id" in line}
    assert set(ran) == {"first ran", "second ran", "second printed"}
    assert ran["second printed"]["level"] == "STDERR"
    for message, task in (
        ("first ran", "first"),
        ("second ran", "second"),
        ("second printed", "second"),
    ):
        line, span = ran[message], tasks[task]
        assert line["run_id"] == span["attributes"]["eventflow.run_id"]
        assert (line["pipeline"], line["task"], line["partition"]) == ("chain", task, "")
        assert line["trace_id"] == span["context"]["trace_id"].removeprefix("0x")
        assert line["span_id"] == span["context"]["span_id"].removeprefix("0x")
    # Both tasks are in one trace.
    assert ran["first ran"]["trace_id"] == ran["second ran"]["trace_id"]
