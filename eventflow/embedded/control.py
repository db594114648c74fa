"""The dev instance's Unix socket: how `emit`, `watch` and the clients reach a running process.

One JSON object per line. `publish` hands raw event bytes in and answers once they are decided on
(or dead-lettered); `watch` streams every committed event until the client hangs up. Both are
push: an emitted event reaches the coordinator as soon as it is read off the socket.

`subscribe` is what `Subscriber` speaks: the request names the event types, where to start
(`name` for a durable subscription, `from_beginning`, `since`, `position`) and is answered with
`{"ok": true, "start": S, "end": E}` (E: the last `seq` committed then). Then each event comes
as one line, `<seq> <event JSON>`, in `seq` order, and `{"caught_up": E}` once every event up to
E has been sent. The client sends `{"ack": P}` lines as it handles events (P: the next `seq` it
wants, at most the one after the last event sent); a durable subscription's position moves on
with them. Anything else from the client, a storage error, or a newer subscriber of the same
name ends the stream with `{"error": REASON}` (a bad line is dead-lettered too).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ConfigurationError, EventError, EventflowError, NotRunning
from ..events import Event, decode, encode, is_external, is_operator
from ..execution import one_line
from ..lifecycle import Lifecycle, Service
from .store import private_folder
from .subscriptions import PAGE, Acks, SubscriptionLog, start_position

if TYPE_CHECKING:
    from .runtime import EmbeddedRuntime

log = logging.getLogger("eventflow.control")
#: Longest line a client reads back (events the instance streams are bounded by their fields).
MAX_LINE = 16 * 1024 * 1024
_SUN_PATH_MAX = 107
#: Seconds a durable subscription's old connection has to end before a new one takes over.
TAKE_OVER_S = 2.0
#: Subscriptions one dev instance serves at once: each reads the log after every commit.
MAX_SUBSCRIBERS = 64
#: Bytes a subscription writes ahead of a reader before it waits for it.
WRITE_BUFFER = 1 << 20


@dataclass(frozen=True)
class CaughtUp:
    """Every event up to `seq` (the log's end when the subscription began) has been sent."""

    seq: int


#: What a subscription streams.
Item = tuple[int, Event] | CaughtUp


def request_limit(max_metadata_bytes: int) -> int:
    """Longest request line: a base64 event whose metadata is at the limit, with room for the
    envelope; anything longer is refused before it is parsed."""
    return (max_metadata_bytes + 64 * 1024) * 4 // 3 + 1024


def control_allows(event: Event) -> bool:
    """What the control socket takes: dataset announcements, and operators' resets."""
    return is_external(event) or is_operator(event)


def _staging(path: Path) -> Path:
    """Where the socket listens before it takes its name: clients wait for the name, and the
    name must not appear before the socket listens."""
    return path.with_name(path.name + "~")


def _check_path(path: Path) -> None:
    if len(os.fsencode(_staging(path))) > _SUN_PATH_MAX:
        raise ConfigurationError(
            f"control socket path {path} is longer than {_SUN_PATH_MAX - 1} bytes; "
            "set EVENTFLOW_HOME to a shorter folder"
        )


class ControlServer(Service):
    """The control socket of a running dev instance; refuses to start while another instance
    answers on the same path."""

    name = "control socket"

    def __init__(self, runtime: EmbeddedRuntime, path: Path) -> None:
        super().__init__()
        self.runtime = runtime
        self.path = path
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        #: Connections serving a subscription, and those a newer subscriber took over.
        self._subscribers: set[asyncio.Task[Any]] = set()
        self._taken: set[asyncio.Task[Any]] = set()
        self._limit = request_limit(runtime.settings.max_metadata_bytes)
        self.subscriptions = SubscriptionLog(runtime.settings.database)

    async def _open(self) -> None:
        _check_path(self.path)
        if self.path.exists():
            try:
                async with ControlClient(self.path) as other:
                    await other.ping()
            except NotRunning:
                self.path.unlink()
            else:
                raise ConfigurationError(
                    f"another eventflow dev instance is running on {self.path.parent}"
                )
        private_folder(self.path.parent)
        await self.subscriptions.start()
        staging = _staging(self.path)
        self._server = await asyncio.start_unix_server(self._serve, staging, limit=self._limit)
        os.chmod(staging, 0o600)
        os.replace(staging, self.path)
        self.ready.set()

    async def _close(self) -> None:
        if self._server is None:
            await self.subscriptions.stop()  # opened before a server that failed to start
            return
        server, self._server = self._server, None
        server.close()
        await self.cancel(*self._clients)
        await server.wait_closed()
        await self.subscriptions.stop()
        for path in (self.path, _staging(self.path)):
            path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per line, one reply per request; a request that cannot be served gets
        `{"ok": false, "error": ...}` and is dead-lettered, and the connection stays usable
        (except after an oversized line, which cannot be skipped reliably)."""
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as e:
                    line = e.partial
                    if not line.strip():
                        return
                except asyncio.LimitOverrunError as e:
                    prefix = await reader.read(e.consumed)
                    reason = f"control request over {self._limit} bytes; connection closed"
                    await self._refuse(prefix, reason)
                    await self._reply(writer, {"ok": False, "error": reason})
                    return
                if line.strip() and await self._handle(line, reader, writer):
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        except RuntimeError:
            if not writer.is_closing():
                raise
            # uvloop's answer to a write after the client hung up: a disconnection too
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; True when the connection has become a watch stream and ended."""
        try:
            request = orjson.loads(line)
            if not isinstance(request, dict):
                raise ValueError(f"a request is a JSON object, not a {type(request).__name__}")
            op = request.get("op")
            if op == "ping":
                app = self.runtime.app
                reply: dict[str, Any] = {
                    "ok": True,
                    "pid": os.getpid(),
                    "ready": self.runtime.ready.is_set(),
                    "pipelines": sorted(app.pipelines),
                    "datasets": sorted(app.datasets),
                }
            elif op == "publish":
                if not isinstance(request.get("raw"), str):
                    raise ValueError("publish needs `raw`: the event's bytes in base64")
                raw = base64.b64decode(request["raw"], validate=True)
                accepted = await self.runtime.publish_raw(
                    raw, origin="control", allowed=control_allows
                )
                reply = {
                    "ok": accepted.dead_letter is None,
                    "id": accepted.event.id,
                    "dead_letter": accepted.dead_letter,
                }
            elif op == "watch":
                await self._stream(writer)
                return True
            elif op == "subscribe":
                await self._subscribe(request, reader, writer)
                return True
            else:
                raise ValueError(f"unknown op {op!r}")
        except (ValueError, orjson.JSONDecodeError) as e:  # binascii.Error is a ValueError
            reason = f"bad control request: {one_line(e)}"
            await self._refuse(line, reason)
            reply = {"ok": False, "error": reason}
        except EventflowError as e:
            reply = {"ok": False, "error": str(e)}
        await self._reply(writer, reply)
        return False

    async def _refuse(self, raw: bytes, reason: str) -> None:
        log.warning("%s", reason)
        try:
            await self.runtime.refuse(raw, reason, "control")
        except EventflowError as e:
            log.error("could not log a refused control request: %s", e)

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(orjson.dumps(reply) + b"\n")
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        queue = self.runtime.subscribe()
        try:
            writer.write(b'{"ok": true}\n')
            await writer.drain()
            while True:
                event = await queue.get()
                writer.write(encode(event) + b"\n")
                await writer.drain()
        finally:
            self.runtime.unsubscribe(queue)

    async def _subscribe(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one subscription until the client hangs up (see the module's docstring). A
        request that cannot be served is refused before `ok`; after it, whatever ends the
        subscription (a bad acknowledgement, a storage error, a newer subscriber of its name)
        is said on the stream's last line, `{"error": ...}`."""
        types = request.get("types") or []
        name = request.get("name")
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ValueError("subscribe needs `types`: a list of event types")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError("a subscription `name` is a non-empty string")
        if len(self._subscribers) >= MAX_SUBSCRIBERS:
            raise ConfigurationError(
                f"{MAX_SUBSCRIBERS} subscribers are served already: close one, or use Kafka"
            )
        subs = self.subscriptions
        serving = asyncio.current_task()
        assert serving is not None
        if name is not None:
            await self._take_over(name)
            subs.in_use[name] = serving  # before any other await: one reader per name
        self._subscribers.add(serving)
        try:
            start = await start_position(subs, request)
            end = (await subs.bounds())[1]
        except BaseException:
            self._subscribers.discard(serving)
            if name is not None and subs.in_use.get(name) is serving:
                del subs.in_use[name]
            raise
        committed = self.runtime.on_commit()
        acks = Acks(subs, name, start) if name is not None else None
        position, sent, caught_up = start, start, False
        hung_up = asyncio.create_task(self._read_acks(reader, acks, lambda: sent))
        hung_up.add_done_callback(lambda _: committed.set())  # wakes the loop below to end
        flusher = asyncio.create_task(acks.run()) if acks is not None else None
        ended: str | None = None
        try:
            await self._reply(writer, {"ok": True, "start": start, "end": end})
            while not hung_up.done():
                committed.clear()
                last = (await subs.bounds())[1]
                rows = await subs.read(position, last, types)
                for seq, event in rows:
                    writer.write(b"%d " % seq + encode(event) + b"\n")
                    if writer.transport.get_write_buffer_size() > WRITE_BUFFER:
                        await writer.drain()  # a reader that stalls holds this much, no more
                if rows:
                    sent = rows[-1][0] + 1
                    await writer.drain()
                position = sent if len(rows) == PAGE else last + 1
                if acks is not None and acks.acked >= sent:
                    acks.ack(position)  # nothing of it wanted: the position moves on anyway
                if not caught_up and position > end:
                    caught_up = True
                    await self._reply(writer, {"caught_up": end})
                if len(rows) < PAGE:
                    await committed.wait()
            if (refused := hung_up.result()) is not None:
                ended = refused
        except EventflowError as e:
            ended = f"the subscription ended: {e}"
            log.error("subscription %s: %s", name or "(live)", e)
        except asyncio.CancelledError:
            if serving in self._taken:
                ended = f"subscription {name!r} was taken over by a newer subscriber"
            raise
        finally:
            self._taken.discard(serving)
            self._subscribers.discard(serving)
            self.runtime.forget_commit(committed)
            await self.cancel(hung_up, *([flusher] if flusher is not None else []))
            if ended is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    writer.write(orjson.dumps({"error": ended}) + b"\n")
            if acks is not None:
                if subs.in_use.get(acks.name) is serving:
                    del subs.in_use[acks.name]
                with contextlib.suppress(EventflowError):
                    await acks.flush()

    async def _take_over(self, name: str) -> None:
        """A name is read by one subscriber at a time: a new one (a service restarted before
        its old connection was noticed gone) takes over. The old connection gets a moment to
        hand in its last acknowledgements, then is closed, and told why."""
        old = self.subscriptions.in_use.get(name)
        if old is None or old.done():
            return
        done, _ = await asyncio.wait({old}, timeout=TAKE_OVER_S)
        if not done:
            log.warning("subscription %r: taken over from the subscriber reading it", name)
            self._taken.add(old)
            await self.cancel(old)

    async def _read_acks(
        self, reader: asyncio.StreamReader, acks: Acks | None, sent: Callable[[], int]
    ) -> str | None:
        """Until the client hangs up: its acknowledgements, each `{"ack": P}` with P a position
        it was sent (up to the one after the last event sent). Anything else ends the
        subscription, dead-lettered with the reason, which is returned."""
        while line := await reader.readline():
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                message = None
            ack = message.get("ack") if isinstance(message, dict) else None
            if not isinstance(ack, int) or isinstance(ack, bool) or not 1 <= ack <= sent():
                reason = (
                    f"bad acknowledgement {line[:200].decode('utf-8', 'replace').strip()!r}: "
                    f'a subscriber sends {{"ack": P}}, P a position it was sent (1..{sent()})'
                )
                await self._refuse(line, reason)
                return reason
            if acks is not None:
                acks.ack(ack)
        return None


class ControlClient(Lifecycle):
    """Talks to a dev instance; `NotRunning` when nothing listens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        if self._writer is not None:
            return
        _check_path(self.path)
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                self.path, limit=MAX_LINE
            )
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise NotRunning(
                f"no eventflow dev instance at {self.path} (start one with `eventflow dev FILE`)"
            ) from e

    async def stop(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._reader is None or self._writer is None:
            raise NotRunning("the control client is not started")
        try:
            self._writer.write(orjson.dumps(request) + b"\n")
            await self._writer.drain()
            line = await self._reader.readline()
        except ConnectionError as e:
            raise NotRunning(f"the dev instance at {self.path} went away") from e
        if not line:
            raise NotRunning(f"the dev instance at {self.path} went away")
        reply: dict[str, Any] = orjson.loads(line)
        return reply

    async def ping(self) -> dict[str, Any]:
        return await self._call({"op": "ping"})

    async def publish_raw(self, raw: bytes) -> dict[str, Any]:
        return await self._call({"op": "publish", "raw": base64.b64encode(raw).decode()})

    async def publish(self, event: Event) -> dict[str, Any]:
        return await self.publish_raw(encode(event))

    async def watch(self) -> AsyncIterator[Event]:
        """Subscribe; once this returns, every event the instance commits is in the iterator."""
        await self._call({"op": "watch"})
        return self._events()

    async def subscribe(
        self, request: dict[str, Any]
    ) -> tuple[dict[str, Any], AsyncIterator[Item]]:
        """Open a subscription (see the module's docstring): the server's answer, and the
        events with their `seq`, and `CaughtUp` once, in order. Raises `ConfigurationError`
        with the server's reason when it refuses."""
        reply = await self._call({"op": "subscribe", **request})
        if not reply.get("ok"):
            raise ConfigurationError(reply.get("error") or "subscription refused")
        return reply, self._items()

    async def ack(self, position: int) -> None:
        """Events before `position` are handled."""
        if self._writer is None:
            raise NotRunning("the control client is not started")
        try:
            self._writer.write(b'{"ack":%d}\n' % position)
            await self._writer.drain()
        except ConnectionError as e:
            raise NotRunning(f"the dev instance at {self.path} went away") from e

    async def _items(self) -> AsyncIterator[Item]:
        assert self._reader is not None
        while line := await self._reader.readline():
            if line.startswith(b"{"):
                message = orjson.loads(line)
                if "caught_up" in message:
                    yield CaughtUp(int(message["caught_up"]))
                elif "error" in message:  # the server ended the subscription, and says why
                    raise ConfigurationError(
                        f"the dev instance ended the subscription: {message['error']}"
                    )
                continue
            seq, _, body = line.partition(b" ")
            try:
                yield int(seq), decode(body, max_metadata_bytes=MAX_LINE)
            except EventError as e:
                log.warning("skipping an unreadable event from the instance: %s", e.reason)
        raise NotRunning(f"the dev instance at {self.path} went away")

    async def _events(self) -> AsyncIterator[Event]:
        assert self._reader is not None
        while line := await self._reader.readline():
            try:
                yield decode(line, max_metadata_bytes=MAX_LINE)
            except EventError as e:
                log.warning("skipping an unreadable event from the instance: %s", e.reason)
