"""Embedded mode when things go wrong: a corrupt file, a full disk, bad control requests."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import orjson
import pytest

import eventflow as ef
from eventflow.embedded.control import request_limit
from eventflow.errors import StorageError
from eventflow.events import DatasetProduced, DeadLetter, DeadLetterData, PipelineRunSucceeded

from .test_cli import HELLO, cli, dev, logged


def test_a_corrupt_state_file_ends_the_process_with_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "eventflow.db").write_bytes(b"this is not a database" * 100)
    done = cli(home, "dev", str(HELLO))  # bounded by cli()'s timeout: it must not hang
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open"), done.stderr
    # With no instance serving, `status` says so in one line, whatever the files hold.
    status = cli(home, "status")
    assert status.returncode == 2, status
    assert status.stderr.startswith("error: no eventflow dev running in ")
    assert len(status.stderr.strip().splitlines()) == 1


def test_state_is_private_to_its_owner(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with dev(home, HELLO):
        assert cli(home, "emit", "greetings.requested").returncode == 0
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in home.iterdir()}
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert modes["eventflow.db"] == 0o600 and modes["eventflow.db-wal"] == 0o600, modes


async def _control(path: Path, lines: list[bytes]) -> list[dict[str, object]]:
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 24)
    replies = []
    try:
        for line in lines:
            writer.write(line + b"\n")
            await writer.drain()
            replies.append(orjson.loads(await reader.readline()))
    finally:
        writer.close()
    return replies


def test_malformed_control_requests_get_an_error_reply(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with dev(home, HELLO) as proc:
        sock = home / "dev.sock"
        bad = [
            b"not json",
            b"[1, 2]",
            b'{"op": "launch"}',
            b'{"op": "publish"}',
            b'{"op": "publish", "raw": "%%%"}',
        ]
        replies = asyncio.run(_control(sock, [*bad, b'{"op": "ping"}']))
        assert [r["ok"] for r in replies] == [False] * len(bad) + [True], replies
        assert all("bad control request" in str(r["error"]) for r in replies[:-1])
        huge = b'{"op": "publish", "raw": "' + b"A" * request_limit(64 * 1024) + b'"}'
        (reply,) = asyncio.run(_control(sock, [huge]))
        assert reply["ok"] is False and "over" in str(reply["error"])
        assert proc.poll() is None
        assert cli(home, "emit", "greetings.requested").returncode == 0
    letters = logged(home, DeadLetter)
    assert len(letters) == len(bad) + 1
    assert all(isinstance(d, DeadLetterData) and d.origin == "control" for d in letters)


async def test_a_full_disk_fails_publishes_loses_nothing_and_recovers(tmp_path: Path) -> None:
    """SQLite's page limit stands in for a full disk: it fails writes with SQLITE_FULL."""
    gate = asyncio.Event()
    src, out = ef.Dataset("src"), ef.Dataset("out")
    p = ef.Pipeline("p")

    @p.task(inputs=[src], outputs=[out])
    async def body(ctx: ef.TaskContext) -> None:
        await gate.wait()
        ctx.emit(out)

    runtime = ef.EmbeddedRuntime(ef.App([p]), ef.Settings(home=tmp_path / "home"))
    async with runtime:
        events = runtime.subscribe()
        await runtime.emit("src", version=1)  # body starts and waits at the gate
        (pages,) = await (await runtime.store.db.execute("PRAGMA page_count")).fetchone()  # type: ignore[misc]
        await runtime.store.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StorageError, match="full"):
            await runtime.emit("src", version=2, metadata={"pad": "x" * 20_000})
        gate.set()  # the body's result cannot be committed yet: it must be kept, not lost
        await asyncio.sleep(0)
        await runtime.store.db.execute("PRAGMA max_page_count = 1073741823")
        await asyncio.wait_for(runtime.wait_idle(), 30)
        accepted = await runtime.emit("src", version=3)
        assert accepted.dead_letter is None
        await asyncio.wait_for(runtime.wait_idle(), 30)
        seen = []
        while not events.empty():
            seen.append(events.get_nowait())
    finished = [e.data for e in seen if isinstance(e, PipelineRunSucceeded)]
    assert [r.partition for r in finished] == ["", ""], "the run in flight and the next one"
    versions = [
        e.data.version for e in seen if isinstance(e, DatasetProduced) and e.data.dataset == "src"
    ]
    assert versions == [1, 3], "version 2 was refused, not half-logged"
    assert not runtime.failed.is_set()


def test_dataset_reset_from_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with dev(home, HELLO):
        assert cli(home, "emit", "greetings.requested", "-v", str(2**63 - 1)).returncode == 0
        reset = cli(home, "datasets", "reset", "greetings.requested", "--reason", "typo")
        assert reset.returncode == 0 and "reset greetings.requested to version 0" in reset.stdout
        assert cli(home, "emit", "greetings.requested", "-v", "5").returncode == 0
    runs = logged(home, PipelineRunSucceeded)
    assert len(runs) == 2, "the version after the reset ran again"
