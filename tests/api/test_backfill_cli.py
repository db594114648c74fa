"""`eventflow backfill` against a running API: the dry run, the progress until done, list, show
and cancel."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest
from click.testing import CliRunner, Result

from eventflow.cli import cli

from .conftest import EMBEDDED_ONLY, TOKEN, Api
from .test_backfills import FIRST, api_app, days
from .test_history_api import until

__all__ = ["api_app"]  # the App these tests serve

pytestmark = pytest.mark.parametrize("api", EMBEDDED_ONLY, indirect=True)


async def run(api: Api, *args: str) -> Result:
    """The command in a thread (it runs its own event loop), against the test's API."""
    env = {"EVENTFLOW_API_URL": api.url, "EVENTFLOW_API_TOKEN": TOKEN}
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, cli, list(args), env=env)


async def test_dry_run_prints_each_partition_and_starts_nothing(api: Api) -> None:
    done = await run(api, "backfill", "assets", "--from", FIRST, "--to", days(3)[-1], "--dry-run")
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0].split() == ["pipeline", "partition", "verdict", "why"]
    assert [line.split()[:3] for line in lines[1:4]] == [["assets", d, "run"] for d in days(3)]
    assert lines[-1] == "3 runs would start, 0 partitions skipped"
    assert not api.engine.pipelines["assets"].backfills


async def test_a_backfill_followed_until_done_then_listed_and_shown(api: Api) -> None:
    done = await run(
        api,
        "backfill",
        "assets",
        "--partitions",
        f"{days(2)[0]},{days(2)[1]}",
        "--max-active",
        "1",
        "--reason",
        "history",
        "--operator",
        "alice",
    )
    assert done.exit_code == 0, done.output
    match = re.search(
        r"backfill (bf-[0-9a-f]+) done: 2 planned, 2 started, 2 succeeded", done.output
    )
    assert match, done.output
    bid = match[1]
    listed = await run(api, "backfill", "list")
    assert bid in listed.output and "done" in listed.output and "2/2" in listed.output
    shown = await run(api, "backfill", "show", bid)
    assert "by alice" in shown.output and "assets: done, 2/2 started" in shown.output
    as_json = orjson.loads((await run(api, "backfill", "show", bid, "--json")).output)
    assert as_json["succeeded"] == 2
    refused = await run(api, "backfill", "cancel", bid, "--reason", "late")
    assert refused.exit_code == 1 and "not running" in refused.output


async def test_a_failed_partition_ends_the_command_with_1_and_cancel(api: Api) -> None:
    failing = days(5)[2]  # the App's `build` fails there
    done = await run(api, "backfill", "assets", "--partitions", failing)
    assert done.exit_code == 1, done.output
    assert "1 failed" in done.output
    started = await run(
        api, "backfill", "assets", "--from", FIRST, "--to", days(30)[-1], "--no-wait"
    )
    bid = started.output.split()[1]
    cancelled = await run(api, "backfill", "cancel", bid, "--reason", "wrong range")
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.output.strip() == f"cancel backfill {bid}: applied"
    assert api.engine.pipelines["assets"].backfills[bid].status == "cancelled"


async def test_a_followed_backfill_cancelled_ends_the_command_with_1(api: Api) -> None:
    month = days(30)[3:]  # after the day that fails: a success but for the cancel
    following = asyncio.ensure_future(
        run(api, "backfill", "assets", "--from", month[0], "--to", month[-1], "--max-active", "1")
    )
    # Cancelled once the command follows it and a run of it has ended; through the API, not a
    # second command: CliRunner swaps the process's stdout, so two commands at once in threads
    # can write into each other's capture.
    [found] = await until(api, "/api/backfills", lambda f: f and f[0]["succeeded"])
    bid = found["id"]
    cancelled = await api.client.post(
        f"/api/backfills/{bid}/cancel", json={"reason": "wrong range", "operator": "bob"}
    )
    assert cancelled.status_code == 200, cancelled.text
    done = await asyncio.wait_for(following, 60)
    assert done.exit_code == 1, done.output
    assert f"backfill {bid} cancelled:" in done.output and " 0 failed" in done.output
