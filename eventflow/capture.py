"""What a task attempt logs and prints, kept per attempt and taken out in chunks.

A body logs through `ctx.log`, a logger under `eventflow.task`; one handler on that logger puts
each record into the log of the attempt it was made in. Which attempt that is travels in a
context variable: asyncio copies it into every task and into `asyncio.to_thread`, so attempts
running side by side in one process never mix lines, and records made outside any attempt are
left alone. A blocking body's `print`s are routed the same way: while such bodies run,
`sys.stdout` and `sys.stderr` stand behind a router that sends what an attempt writes to its
log (and on to the stream, each line prefixed with the run id) and passes everything else
through untouched.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from .events import MAX_LOG_LINES, MAX_TEXT, LogLine, TaskLogData, TaskRef
from .runtime.clock import Cancellable, Clock
from .tracing import Trace

#: Pending bytes at which a chunk is sent without waiting for the interval.
CHUNK_BYTES = 16 * 1024
#: The logger every task body's `ctx.log` is a child of.
TASK_LOGGER = "eventflow.task"
#: Levels of what a blocking body wrote to `sys.stdout` and `sys.stderr`.
STREAMS = {"stdout": "STDOUT", "stderr": "STDERR"}

#: The run id of the task or check attempt the code running now belongs to, if any.
RUN_ID: ContextVar[str | None] = ContextVar("eventflow_run_id", default=None)
_LOG: ContextVar[AttemptLog | None] = ContextVar("eventflow_attempt_log", default=None)
#: The task attempt running now and its trace context, for structured log lines.
ATTEMPT: ContextVar[tuple[TaskRef, Trace | None] | None] = ContextVar(
    "eventflow_attempt", default=None
)


class AttemptLog:
    """The lines of one task attempt: capped at `max_bytes` of messages (later lines are
    dropped and counted), handed out as `TaskLogData` chunks by `take`.

    Lines may come from any thread. `wanted` is set on the event loop when a chunk should go
    out: `interval_s` after the first line waiting, or at once when `CHUNK_BYTES` wait.
    """

    def __init__(
        self,
        ref: TaskRef,
        *,
        max_bytes: int,
        clock: Clock,
        interval_s: float | None = None,
        prints: bool = False,
        on_wanted: Callable[[], None] | None = None,
    ) -> None:
        self.run_id = ref.run_id
        self._ref = ref  # a chunk's `TaskRef`, built only for chunks: most attempts log nothing
        self.max_bytes = max_bytes
        self.clock = clock
        self.interval_s = interval_s
        #: Whether what the attempt writes to stdout and stderr is kept (blocking bodies).
        self.prints = prints
        self.wanted = asyncio.Event()
        #: Told each time a chunk is wanted out while the attempt runs (the owner's sender
        #: starts then: most attempts log nothing).
        self.on_wanted = on_wanted
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._pending: list[tuple[LogLine, int]] = []
        self._pending_bytes = 0
        self._kept_bytes = 0
        self._dropped = 0
        self._dropped_bytes = 0
        self._seq = 0
        self._partial: dict[str, str] = {}
        self._timer: Cancellable | None = None
        self.closed = False

    def add(self, level: str, message: str) -> None:
        """Keep one line, or count it as dropped once the cap is reached; from any thread."""
        with self._lock:
            poke = self._add(level, message)
        if poke:
            try:
                self._loop.call_soon_threadsafe(self.schedule)
            except RuntimeError:  # the loop is gone: nothing will send the chunk anyway
                pass

    def write(self, level: str, text: str) -> list[str]:
        """Text written to a stream: the lines it completes are kept (and returned, to be
        passed on); the rest waits for its newline or for `close`."""
        with self._lock:
            if self.closed:
                return []
            lines = (self._partial.pop(level, "") + text).split("\n")
            rest = lines.pop()
            if len(rest) > MAX_TEXT:  # no newline in sight: do not hold it without end
                lines.append(rest)
            elif rest:
                self._partial[level] = rest
            done = lines
        for line in done:
            self.add(level, line)
        return done

    def close(self) -> dict[str, str]:
        """No more lines: unfinished printed lines are kept, then a line saying what was
        dropped, if anything was. Returns the unfinished lines by level, to be passed on (none
        when closed already)."""
        with self._lock:
            if self.closed:
                return {}
            rest, self._partial = self._partial, {}
            for level, text in rest.items():
                self._add(level, text)
            if self._dropped:
                note = (
                    f"{self._dropped} more lines ({self._dropped_bytes} bytes) dropped: an "
                    f"attempt keeps {self.max_bytes} bytes of log (task_log_max_bytes)"
                )
                self._keep("WARNING", note)
            self.closed = True
        self._cancel_timer()
        self.on_wanted = None  # no chunk is wanted out any more; and no cycle to its owner is left
        self.wanted.set()
        return rest

    def take(self) -> TaskLogData | None:
        """The next chunk of lines waiting, oldest first; None when none wait."""
        with self._lock:
            if not self._pending:
                return None
            count = size = 0
            while count < len(self._pending) and count < MAX_LOG_LINES and size < CHUNK_BYTES:
                size += self._pending[count][1]
                count += 1
            lines = [line for line, _ in self._pending[:count]]
            del self._pending[:count]
            self._pending_bytes -= size
            seq, self._seq = self._seq, self._seq + 1
            truncated = self._dropped > 0
        self._cancel_timer()
        return TaskLogData(
            run_id=self.run_id,
            task=self._ref.task,
            pipeline=self._ref.pipeline,
            partition=self._ref.partition,
            attempt=self._ref.attempt,
            seq=seq,
            lines=lines,
            truncated=truncated,
        )

    def _add(self, level: str, message: str) -> bool:
        """Under the lock: keep or drop; whether the event loop must hear of it."""
        if self.closed:
            return False
        size = len(message.encode(errors="replace"))
        if self._dropped or self._kept_bytes + size > self.max_bytes:
            # A log is a prefix of what was written: after the first drop, drop the rest.
            self._dropped += 1
            self._dropped_bytes += size
            return False
        self._kept_bytes += size
        was_empty = not self._pending
        was_full = self._full()
        self._keep(level, message)
        return was_empty or (self._full() and not was_full)

    def _keep(self, level: str, message: str) -> None:
        if len(message) > MAX_TEXT:
            message = message[: MAX_TEXT - 1] + "…"
        when = datetime.fromtimestamp(self.clock.time(), UTC)
        line = LogLine(time=when, level=level, message=message)
        size = len(message.encode(errors="replace"))
        self._pending.append((line, size))
        self._pending_bytes += size

    def _full(self) -> bool:
        return self._pending_bytes >= CHUNK_BYTES or len(self._pending) >= MAX_LOG_LINES

    def schedule(self) -> None:
        """On the event loop: want a chunk out now if a full one waits, else `interval_s` after
        now if lines wait (and no timer is set yet)."""
        if self.closed:
            return
        with self._lock:
            full, waiting = self._full(), bool(self._pending)
        if full:
            self._want()
        elif waiting and self._timer is None and self.interval_s is not None:
            self._timer = self.clock.call_at(self.clock.time() + self.interval_s, self._due)

    def _due(self) -> None:
        self._timer = None
        self._want()

    def _want(self) -> None:
        self.wanted.set()
        if self.on_wanted is not None:
            self.on_wanted()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


#: A record as a task log keeps it: the message, and the traceback if one was logged.
MESSAGE = logging.Formatter("%(message)s")


class _Router(logging.Handler):
    """On the `eventflow.task` logger: each record to the log of the attempt it was made in."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(MESSAGE)

    def emit(self, record: logging.LogRecord) -> None:
        log = _LOG.get()
        if log is None:
            return
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        log.add(record.levelname, message)


def install() -> None:
    """Route task loggers' records to their attempts (once per process). A body's INFO lines
    are kept unless `eventflow.task`'s level was set otherwise; the service's own stderr keeps
    the level it was given (`setup_logging`)."""
    logger = logging.getLogger(TASK_LOGGER)
    if not any(isinstance(handler, _Router) for handler in logger.handlers):
        logger.addHandler(_Router())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


class RunIdFilter(logging.Filter):
    """For a handler whose format has `%(run)s`: ` [run id]` for records made in an attempt."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = RUN_ID.get()
        record.run = f" [{run_id}]" if run_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, ISO 8601), `level`, `logger`, `message` (with
    the traceback, if any), and for lines of a task attempt its `run_id`, `pipeline`, `task`,
    `partition`, `attempt`, `trace_id` and `span_id`, so a log store joins lines to runs
    and traces by field rather than by parsing text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["message"] = f"{line['message']}\n{self.formatException(record.exc_info)}"
        elif record.stack_info:
            line["message"] = f"{line['message']}\n{self.formatStack(record.stack_info)}"
        run_id = RUN_ID.get()
        if run_id is not None:
            line["run_id"] = run_id
        current = ATTEMPT.get()
        if current is not None:
            ref, trace = current
            line |= {
                "pipeline": ref.pipeline,
                "task": ref.task,
                "partition": ref.partition,
                "attempt": ref.attempt,
            }
            if trace is not None:
                line |= {"trace_id": trace.trace_id, "span_id": trace.span_id}
        return orjson.dumps(line).decode()


@contextmanager
def attempt(
    run_id: str,
    log: AttemptLog | None = None,
    *,
    ref: TaskRef | None = None,
    trace: Trace | None = None,
) -> Iterator[None]:
    """Code run inside belongs to `run_id` (of task attempt `ref`, in `trace`), and logs
    (and, if `log.prints`, prints) to `log`."""
    run_token = RUN_ID.set(run_id)
    log_token = _LOG.set(log)
    attempt_token = ATTEMPT.set((ref, trace) if ref is not None else None)
    printing = log is not None and log.prints
    if printing:
        _Streams.enter()
    try:
        yield
    finally:
        _LOG.reset(log_token)
        try:
            if log is not None:
                rest = log.close()
                for name, level in STREAMS.items():
                    stream = _Streams.inner(name)
                    if level in rest and stream is not None:
                        stream.write(_passed_on(run_id, level, [rest[level]]))
        finally:
            ATTEMPT.reset(attempt_token)
            RUN_ID.reset(run_token)
            if printing:
                _Streams.leave()


#: Set by `print_as_json`: how printed lines passed on to the real streams are written.
_JSON: JsonFormatter | None = None


def print_as_json(on: bool) -> None:
    """Pass what blocking bodies print on to the real streams as JSON log lines (level
    `STDOUT`/`STDERR`, logger `eventflow.task`), so a JSON log stays JSON throughout."""
    global _JSON
    _JSON = JsonFormatter() if on else None


def _passed_on(run_id: str, level: str, lines: list[str]) -> str:
    if _JSON is None:
        return "".join(f"[{run_id}] {line}\n" for line in lines)
    formatter = _JSON
    out = []
    for line in lines:
        record = logging.LogRecord(TASK_LOGGER, logging.INFO, "", 0, line, None, None)
        record.levelname = level
        out.append(formatter.format(record) + "\n")
    return "".join(out)


class _Stream:
    """Stands in for `sys.stdout` or `sys.stderr` while blocking bodies run."""

    def __init__(self, inner: TextIO, level: str) -> None:
        self.inner = inner
        self.level = level

    def write(self, text: str) -> int:
        log = _LOG.get()
        if log is None or not log.prints or log.closed:
            return self.inner.write(text)
        lines = log.write(self.level, text)
        if lines:
            self.inner.write(_passed_on(log.run_id, self.level, lines))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _Streams:
    """How many attempts route their prints now; the routers stand in only while some do."""

    lock = threading.Lock()
    users = 0

    @classmethod
    def enter(cls) -> None:
        with cls.lock:
            cls.users += 1
            for name, level in STREAMS.items():
                current = getattr(sys, name)
                # Checked each time: something (a test runner) may have swapped the stream.
                if current is not None and not isinstance(current, _Stream):
                    setattr(sys, name, _Stream(current, level))

    @classmethod
    def leave(cls) -> None:
        with cls.lock:
            cls.users -= 1
            if cls.users == 0:
                for name in STREAMS:
                    current = getattr(sys, name)
                    if isinstance(current, _Stream):
                        setattr(sys, name, current.inner)

    @staticmethod
    def inner(name: str) -> TextIO | None:
        current = getattr(sys, name)
        return current.inner if isinstance(current, _Stream) else current


def setup_logging(level: str = "WARNING", log_format: str = "text") -> None:
    """Log to stderr as `LEVEL logger [run id]: message` (the run id of lines logged by a
    task or check attempt), or with `log_format="json"` one JSON object per line
    (`capture.JsonFormatter`). Called again, the level and the format change."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.addFilter(RunIdFilter())
        root.addHandler(handler)
    root.setLevel(level)
    json = log_format == "json"
    print_as_json(json)
    for ours in root.handlers:
        if any(isinstance(f, RunIdFilter) for f in ours.filters):
            # Task loggers pass INFO on for the task log; stderr shows what `level` says.
            ours.setLevel(level)
            ours.setFormatter(
                JsonFormatter()
                if json
                else logging.Formatter("%(levelname)s %(name)s%(run)s: %(message)s")
            )
    # aiokafka logs every retry while metadata settles; our own errors say what went wrong.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
