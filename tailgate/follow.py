"""`tailgate tail`: one WebSocket to the gateway, every stream subscribed on it, and the
resume after a dropped connection.

Per stream the command keeps the id of the last line it took (`cursor`): when the
connection drops (the gateway restarted or drained, the load balancer moved it, the
network failed) it connects to the same URL again (through the load balancer, to any
replica) and subscribes each stream with ``since`` = that id, so no line is missing and
none is repeated (with the epoch of the history that id is from, so a history Redis lost
is said, `gap` reset); a stream that sent no line yet resumes after its `caught_up` point.
What the gateway says it could not send (`gap`, `dropped`) is told on stderr.

A minion glob (``file:web-*:/path``) is subscribed once; the gateway answers with its
member streams, which are then followed (and resumed) each on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tailgate.config import Target
from tailgate.errors import BY_CODE, CliError, Exit
from tailgate.merge import Merger
from tailgate.output import Printer
from wire.codes import CloseCode, ErrorCode, GapReason

BACKOFF = (0.25, 5.0)
RETRY_REFUSED_AFTER = 2.0
TICK = 0.05
NEW_SEQUENCE = {GapReason.RESET, GapReason.BEHIND}  # after these, ids start again: take the next lines
GAP_WORDS = {
    "reset": "Redis lost the stream's history; its lines start again from the new history",
    "behind": "Redis came back with an older copy of the history; lines may be missing",
    "trimmed": "lines older than the gateway's retained history were lost",
    "history_bytes": "more history than the gateway sends at once (gateway.max_history_bytes) was left out",
    "unavailable": "history could not be read after a Redis outage",
}


@dataclass(slots=True)
class _Stream:
    name: str
    cursor: str | None = None  # the last id taken (or the caught_up point): resume after it
    epoch: str | None = None  # the epoch of the history `cursor` is from (sent back with it)
    restart: bool = False  # a gap reset/behind: the next lines start a new sequence of ids
    done: bool = False
    glob: bool = False  # a minion glob: replaced by its members once subscribed


class Follower:
    """Subscribes, prints through the merger, reconnects; `run` returns the exit status."""

    def __init__(
        self,
        target: Target,
        streams: list[str],
        fields: dict[str, Any],
        first: dict[str, Any],
        finite: bool,
        printer: Printer,
        window: float,
        retry_for: float,
    ) -> None:
        self.target = target
        self.fields = fields  # filter fields of every subscribe
        self.first = first  # history fields of the first subscribe: backlog, from, since (and until)
        self.until = {k: v for k, v in first.items() if k == "until"}
        self.finite = finite
        self.printer = printer
        self.retry_for = retry_for
        self.streams = {name: _Stream(name, glob=_is_glob(name)) for name in streams}
        self.merger = Merger(self._take, window)
        self._retries: set[asyncio.Task[None]] = set()

    def _take(self, stream: str, line: dict[str, Any]) -> None:
        self.printer.line(stream, line)

    # The connection ---------------------------------------------------------------

    async def run(self) -> Exit:
        connected_once = False
        down_since: float | None = None
        pause = BACKOFF[0]
        while True:
            try:
                async with websockets.connect(
                    self.target.ws_url,
                    additional_headers=self.target.headers,
                    max_size=None,
                    open_timeout=10,
                    ping_interval=20,
                    ping_timeout=20,
                ) as ws:
                    if connected_once:
                        self.printer.note("connected again; resuming each stream after its last line")
                    connected_once, down_since, pause = True, None, BACKOFF[0]
                    if await self._session(ws):
                        return Exit.OK
                why = _closed(ws.close_code, ws.close_reason or "")  # the gateway closed it cleanly (1001: draining)
            except InvalidStatus as exc:
                status = exc.response.status_code
                body = exc.response.body.decode("utf-8", "replace").strip()[:300] if exc.response.body else ""
                if status == 401:
                    raise CliError(Exit.UNAUTHORIZED, f"the gateway refused the token (HTTP 401): {body}") from None
                if status in (403, 421):
                    raise CliError(Exit.FORBIDDEN, f"the gateway refused this client (HTTP {status}): {body}") from None
                why = f"HTTP {status} from {self.target.ws_url}"
            except ConnectionClosed as exc:
                why = _closed(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "")
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                if not connected_once:
                    raise CliError(Exit.UNREACHABLE, f"cannot reach the gateway at {self.target.url}: {exc}") from None
                why = f"gateway unreachable ({exc})"
            now = time.monotonic()
            if down_since is None:
                down_since = now
                self.printer.note(f"{why}; reconnecting")
            elif now - down_since > self.retry_for:
                raise CliError(Exit.UNREACHABLE, f"{why}; gave up after {self.retry_for:g}s")
            await asyncio.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, BACKOFF[1])

    async def _session(self, ws: websockets.ClientConnection) -> bool:
        """Subscribe everything not yet done and handle frames; True once every stream is done."""
        for stream in list(self.streams.values()):
            if not stream.done:
                await self._subscribe(ws, stream)
        ticker = asyncio.create_task(self._tick())
        try:
            async for raw in ws:
                await self._frame(ws, json.loads(raw))
                if self.finite and all(s.done for s in self.streams.values()):
                    self.merger.flush()
                    self.printer.flush()
                    return True
        finally:
            ticker.cancel()
            for retry in list(self._retries):
                retry.cancel()
        return False

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.merger.flush()
            self.printer.flush()

    async def _subscribe(self, ws: websockets.ClientConnection, stream: _Stream) -> None:
        msg: dict[str, Any] = {"op": "subscribe", "stream": stream.name, "caught_up": True, **self.fields}
        if stream.cursor:
            msg.update(since=stream.cursor, **self.until)
            if stream.epoch:
                msg["epoch"] = stream.epoch
        else:
            msg.update(self.first)
        self.merger.expect(stream.name)
        await ws.send(json.dumps(msg))

    # Frames -----------------------------------------------------------------------

    async def _frame(self, ws: websockets.ClientConnection, frame: dict[str, Any]) -> None:
        kind, name = frame.get("type"), frame.get("stream")
        stream = self.streams.get(name) if isinstance(name, str) else None
        if kind == "lines" and stream is not None:
            self._lines(stream, frame.get("lines") or [], frame.get("epoch"))
            self.merger.flush()
        elif kind == "subscribed" and stream is not None and stream.glob:
            self._members(stream, frame.get("streams") or [])
        elif kind == "caught_up" and stream is not None:
            if stream.cursor is None:
                stream.cursor, stream.epoch = frame.get("after"), frame.get("epoch")
            self.merger.live(stream.name)
        elif kind == "complete" and stream is not None:
            stream.done = True
            self.merger.done(stream.name)
        elif kind == "gap" and stream is not None:
            stream.restart = frame.get("reason") in NEW_SEQUENCE
            self.printer.note(f"gap in {name}: {GAP_WORDS.get(frame.get('reason', ''), 'lines are missing here')}")
        elif kind == "dropped" and stream is not None:
            self.printer.note(f"{frame.get('count')} lines of {name} dropped: this terminal fell behind")
        elif kind == "status" and stream is not None:
            message = f": {frame['message']}" if frame.get("message") else ""
            self.printer.note(f"{name}: remote tail {frame.get('state')}{message}")
        elif kind == "error":
            await self._error(ws, stream, frame)

    def _lines(self, stream: _Stream, lines: list[dict[str, Any]], epoch: str | None) -> None:
        cursor = None if stream.restart else _id(stream.cursor)
        stream.restart = False
        fresh = [line for line in lines if cursor is None or _id(line.get("id")) > cursor]
        if fresh:
            stream.cursor, stream.epoch = fresh[-1]["id"], epoch
            self.merger.add(stream.name, fresh)

    def _members(self, glob: _Stream, members: list[str]) -> None:
        """A glob answered with its member streams: follow them instead (their frames follow)."""
        del self.streams[glob.name]
        self.merger.forget(glob.name)
        self.printer.sources = True
        for name in members:
            if name not in self.streams:
                self.streams[name] = _Stream(name)
                self.merger.expect(name)

    async def _error(self, ws: websockets.ClientConnection, stream: _Stream | None, frame: dict[str, Any]) -> None:
        code, message = frame.get("code", ""), frame.get("message", "")
        where = f" ({frame['stream']})" if frame.get("stream") else ""
        status = BY_CODE.get(code)
        if status is not None:
            raise CliError(status, f"{code}{where}: {message}")
        if stream is None or code not in (ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED):
            self.printer.note(f"{code}{where}: {message}")
            return
        self.printer.note(f"{code}{where}: {message}; subscribing again in {RETRY_REFUSED_AFTER:g}s")
        retry = asyncio.create_task(self._subscribe_later(ws, stream))
        self._retries.add(retry)
        retry.add_done_callback(self._retries.discard)

    async def _subscribe_later(self, ws: websockets.ClientConnection, stream: _Stream) -> None:
        await asyncio.sleep(RETRY_REFUSED_AFTER)
        if not stream.done and self.streams.get(stream.name) is stream:
            with contextlib.suppress(ConnectionClosed):  # the reconnect subscribes it again
                await self._subscribe(ws, stream)


def _closed(code: int | None, reason: str) -> str:
    """Why the connection ended, to reconnect; or `CliError` when reconnecting cannot help."""
    if code == CloseCode.TOKEN_EXPIRED:
        raise CliError(Exit.UNAUTHORIZED, "the token expired (close 4001): get a new one")
    if code in (CloseCode.POLICY, CloseCode.TOO_LARGE):
        raise CliError(Exit.FAILED, f"the gateway closed the connection: {code} {reason}")
    return f"connection closed ({code or 'dropped'}{f' {reason}' if reason else ''})"


def _is_glob(name: str) -> bool:
    minion = name[5:].partition(":")[0] if name.startswith("file:") else ""
    return "*" in minion or "?" in minion


def _id(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    ms, _, seq = value.partition("-")
    return (int(ms), int(seq)) if ms.isdigit() and seq.isdigit() else None
