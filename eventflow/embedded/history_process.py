"""The embedded history projector in a process of its own.

Projecting the log is Python work per event, a third of a busy dev instance's time, and it held
the decision loop meanwhile (docs/benchmarks.md). In a child process it runs on another core.
The runtime and the child speak one line at a time over the child's stdin and stdout:

- to the child: `w` (the log gained events) and `f N` (project everything logged, then say so);
- from the child: `p SEQ` (the history holds the log up to `seq` SEQ), `f N SEQ` (flush N done)
  and `e N` (flush N failed: the history store could not take the writes).

Closing its stdin makes the child project what is left and exit. A child that dies is started
again, after a pause that grows with failures in a row; it resumes from the position the history
store holds, so nothing is lost or projected twice. The runtime learns each position: its log
retention trims only what the history holds, and the events it committed are handed to the
history store's listeners (the live pages) once the child says the history holds them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import deque
from pathlib import Path

from ..capture import setup_logging
from ..errors import StorageError
from ..history import HistoryStore
from ..history.store import read_logged
from ..lifecycle import pause_after
from .history import EmbeddedProjector

log = logging.getLogger("eventflow.history")

#: Bytes of committed events kept for the listeners until the child has projected them; beyond
#: it the oldest are let go (the live pages then miss their refresh, the history misses nothing).
HANDED_MAX = 32 << 20
#: Events read back and handed over at a time.
HANDED_CHUNK = 1000
#: Seconds the child may take to project what is left when it is stopped.
STOP_S = 60.0
#: The environment variable that carries the history store's URL (it may hold a password).
URL_VARIABLE = "EVENTFLOW_HISTORY_PROCESS_URL"


class HistoryProcess:
    """`EmbeddedProjector`'s place in the runtime, with the projecting done by a child process;
    `history` is this process's handle on the store, for queries and listeners."""

    def __init__(
        self,
        database: Path,
        history: HistoryStore,
        *,
        log_level: str = "WARNING",
        log_format: str = "text",
    ) -> None:
        """The child logs to the same stderr as this process, at `log_level`, in `log_format`
        (`Settings.log_level`, `Settings.log_format`)."""
        self.database = database
        self.history = history
        self.log = (log_level, log_format)
        #: The last `seq` of the log the history store holds, as the child last said.
        self.position = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._handed: deque[tuple[int, list[bytes], int]] = deque()  # first seq, bodies, bytes
        self._handed_bytes = 0
        self._flushes: dict[int, asyncio.Future[int]] = {}
        self._flushed = 0
        self._stopping = False

    @property
    def started(self) -> bool:
        return self._supervisor is not None

    async def start(self) -> None:
        if self._supervisor is not None:
            return
        await self.history.start()
        try:
            self._proc = await self._spawn()
        except BaseException:
            await self.history.stop()
            raise
        self._stopping = False
        self._supervisor = asyncio.create_task(self._supervise(), name="eventflow history process")

    async def stop(self) -> None:
        """Let the child project what is left and exit (killed after `STOP_S`)."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is None:
            return
        self._stopping = True
        try:
            proc = self._proc
            if proc is not None and proc.returncode is None:
                assert proc.stdin is not None
                proc.stdin.close()
                try:
                    await asyncio.wait_for(proc.wait(), STOP_S)
                except TimeoutError:
                    log.warning("the history process took over %ss to stop: killed", STOP_S)
                    proc.kill()
                    await proc.wait()
                # Its last lines, the position it reached, are read to their end.
                await asyncio.wait([supervisor], timeout=STOP_S)
        finally:
            supervisor.cancel()
            # Ended without raising here: an error of its own already failed the runtime (`run`).
            await asyncio.wait([supervisor])
            self._fail_flushes(StorageError("the history process was stopped"))
            await self.history.stop()

    async def run(self) -> None:
        """Until the supervision of the child ends (by `stop`, or an unexpected error, which
        fails the runtime). Cancelling this leaves the child running: `stop` ends it."""
        if self._supervisor is not None:
            await asyncio.shield(self._supervisor)

    def wake(self) -> None:
        """New events were committed to the log."""
        self._say(b"w\n")

    def hand(self, first: int, bodies: list[bytes]) -> None:
        """The events just committed to the log, as logged and numbered from `first`: for the
        listeners, once the child says the history holds them. Kept as bytes, and read back
        only if a listener is there by then: a busy instance would otherwise hold tens of
        thousands of events, and its collector walk them all, again and again."""
        size = sum(map(len, bodies))
        self._handed.append((first, bodies, size))
        self._handed_bytes += size
        while self._handed_bytes > HANDED_MAX:
            self._handed_bytes -= self._handed.popleft()[2]

    async def flush(self) -> int:
        """Until the history holds everything logged so far; its position."""
        if self._supervisor is None:
            raise StorageError("the history process is not started")
        if self._supervisor.done():
            raise StorageError("the history process is no longer followed")
        if self._proc is None:
            raise StorageError("the history process is being started again")
        self._flushed += 1
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._flushes[self._flushed] = done
        self._say(f"f {self._flushed}\n".encode())
        return await done

    # -- the child -------------------------------------------------------------------------------
    async def _spawn(self) -> asyncio.subprocess.Process:
        env = {**os.environ, URL_VARIABLE: self.history.url}
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from eventflow.embedded.history_process import main; main()",
                str(self.database),
                str(self.history.retention_days),
                *self.log,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as e:
            raise StorageError(f"cannot start the history process: {e}") from e

    async def _supervise(self) -> None:
        failures = 0
        while True:
            proc = self._proc
            if proc is not None:
                assert proc.stdout is not None
                async for line in proc.stdout:
                    if self._heard(line):
                        failures = 0
                code = await proc.wait()
                self._proc = None  # until the next: flushes are refused, not lost
                self._fail_flushes(StorageError(f"the history process exited ({code})"))
                if self._stopping:
                    return
                log.error("the history process exited (%s); starting it again", code)
            failures += 1
            await asyncio.sleep(pause_after(failures))
            if self._stopping:
                return
            try:
                self._proc = await self._spawn()
            except StorageError as e:
                log.error("%s", e)
                continue
            self.wake()

    def _heard(self, line: bytes) -> bool:
        """Take one line from the child; whether it said the history moved on. A line that is
        none of the child's (a library printing to stdout) is logged and left."""
        try:
            kind, *rest = line.split()
            if kind == b"e":
                done = self._flushes.pop(int(rest[0]), None)
                if done is not None and not done.done():
                    done.set_exception(StorageError("the history store did not take the events"))
                return False
            if kind not in (b"p", b"f"):
                raise ValueError(kind)
            seq = int(rest[-1])
            flush = int(rest[0]) if kind == b"f" else None
        except (ValueError, IndexError):
            log.warning("the history process said %r: not understood", line[:200])
            return False
        self._at(seq)
        if flush is not None and (done := self._flushes.pop(flush, None)) and not done.done():
            done.set_result(self.position)
        return True

    def _at(self, seq: int) -> None:
        self.position = max(self.position, seq)
        held: list[bytes] = []
        while self._handed and self._handed[0][0] + len(self._handed[0][1]) - 1 <= seq:
            _, bodies, size = self._handed.popleft()
            self._handed_bytes -= size
            held += bodies
        # Read back a chunk at a time, and no further once nobody listens: after a long lag,
        # a live feed is cut off long before the end (`Fanout.limit`).
        for start in range(0, len(held), HANDED_CHUNK):
            if not self.history.listeners:
                break
            events = read_logged(held[start : start + HANDED_CHUNK])
            for listener in list(self.history.listeners):
                listener(events)

    def _say(self, line: bytes) -> None:
        proc = self._proc
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(line)

    def _fail_flushes(self, error: StorageError) -> None:
        flushes, self._flushes = self._flushes, {}
        for done in flushes.values():
            if not done.done():
                done.set_exception(error)


async def _child(database: Path, url: str, retention_days: float) -> None:
    projector = EmbeddedProjector(database, HistoryStore(url, retention_days=retention_days))
    out = sys.stdout.buffer

    def say(line: str) -> None:
        out.write(line.encode())
        out.flush()

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    asked: list[int] = []
    woken = asyncio.Event()
    ended = False

    async def listen() -> None:
        nonlocal ended
        while line := await reader.readline():
            if line.startswith(b"f"):
                asked.append(int(line.split()[1]))
            woken.set()
        ended = True
        woken.set()

    listening = asyncio.create_task(listen())
    await projector.start()
    try:
        say(f"p {projector.position}\n")
        failures = 0
        woken.set()  # what was logged while no child ran
        while True:
            await woken.wait()
            woken.clear()
            flushes = asked[:]
            del asked[:]
            try:
                await projector.flush()
            except StorageError as e:
                failures += 1
                log.error("history projection failed (%d in a row): %s", failures, e)
                for n in flushes:
                    say(f"e {n}\n")
                if ended:
                    break
                woken.set()
                await asyncio.sleep(pause_after(failures))
                continue
            failures = 0
            say(f"p {projector.position}\n")
            for n in flushes:
                say(f"f {n} {projector.position}\n")
            if ended:
                break
    finally:
        listening.cancel()
        await projector.stop()


def main() -> None:
    """The child: `python -c ... DATABASE RETENTION_DAYS LOG_LEVEL LOG_FORMAT`, the history
    store's URL in the environment (`URL_VARIABLE`)."""
    database, retention_days, level, log_format = sys.argv[1:5]
    setup_logging(level, log_format)
    asyncio.run(_child(Path(database), os.environ[URL_VARIABLE], float(retention_days)))
