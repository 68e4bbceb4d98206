"""A blocking Server-Sent-Events reader over a streaming ``requests.Response``.

A broken stream is not reconnected: yagna's batch streams do not replay (a real exe-unit sends
each event once), and a stream breaks mostly because yagna went away, which ends the exe-unit
and its batch too. The reader raises :class:`~golem_sync.errors.YagnaLostError` instead, and
the caller's result poll (which does retry, with backoff) or the job's retry policy takes over.
"""
from __future__ import annotations

import codecs
import json
import re
import logging
import socket
import threading
from typing import Any, Callable, Generic, Iterator, List, Optional, TypeVar

import requests

from ..errors import YagnaLostError, YagnaProtocolError, YagnaTimeoutError

__all__ = ["SseMessage", "iter_sse", "EventStream"]

logger = logging.getLogger("golem_sync.yagna.sse")

T = TypeVar("T")

_EOL = re.compile(r"\r\n|\r|\n")


class SseMessage:
    """One dispatched SSE message: its ``event`` name (default ``"message"``) and ``data``."""

    __slots__ = ("event", "data", "id")

    def __init__(self, event: str, data: str, id: Optional[str]) -> None:
        self.event = event
        self.data = data
        self.id = id

    def __repr__(self) -> str:
        return f"SseMessage(event={self.event!r}, data={self.data[:60]!r})"


#: The longest SSE line (and message) accepted, in characters: yagna sends one line per event, and
#: an exe-unit's output chunk is far smaller; a longer one is refused, not buffered.
MAX_LINE = 16 * 1024 * 1024


#: The largest piece read from a chunked event stream at once, in bytes.
READ_SIZE = 64 * 1024


def _lines(chunks: Iterator[bytes], max_line: int = MAX_LINE) -> Iterator[str]:
    """Split a byte stream into lines on CRLF, LF or CR, as the SSE spec says.

    Linear in the input (only new text is searched for line ends); a line longer than
    ``max_line`` characters raises YagnaProtocolError once that much of it has arrived.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    parts: List[str] = []  # the current, unterminated line in pieces
    size = 0
    pending_cr = False
    for chunk in chunks:
        text = decoder.decode(chunk)
        if not text:
            continue
        if pending_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across two chunks
        # A trailing CR already ended its line; remember it so a following LF is not a new line.
        pending_cr = text.endswith("\r")
        first, *complete = _EOL.split(text)
        if complete:
            rest = complete.pop()
            complete.insert(0, "".join(parts) + first)
            if max(map(len, complete)) > max_line:
                raise YagnaProtocolError(f"an SSE line longer than {max_line} characters")
            yield from complete
            parts, size = [rest], len(rest)
        else:
            parts.append(first)
            size += len(first)
        if size > max_line:
            raise YagnaProtocolError(f"an SSE line longer than {max_line} characters (not buffered further)")
    parts.append(decoder.decode(b"", final=True))
    if any(parts):
        yield "".join(parts)


def iter_sse(chunks: Iterator[bytes], max_line: int = MAX_LINE) -> Iterator[SseMessage]:
    """Parse SSE from raw byte chunks: ``event:``/``data:``/``id:`` fields, ``:`` comments
    (yagna's ``:ping`` keep-alives) ignored, a blank line dispatches the message. A line, or the
    data of one message, longer than ``max_line`` characters raises YagnaProtocolError."""
    event = ""
    data: List[str] = []
    data_size = 0
    last_id: Optional[str] = None
    for line in _lines(chunks, max_line):
        if line == "":
            if data:
                yield SseMessage(event or "message", "\n".join(data), last_id)
            event, data, data_size = "", [], 0
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data_size += len(value) + 1
            if data_size > max_line:
                raise YagnaProtocolError(f"an SSE message longer than {max_line} characters (not buffered further)")
            data.append(value)
        elif name == "id":
            last_id = value
        # "retry" and unknown fields are ignored, as the spec says.
    if data:
        # The stream ended without the final blank line: still deliver what was complete.
        yield SseMessage(event or "message", "\n".join(data), last_id)


class EventStream(Generic[T]):
    """An iterator of parsed SSE events over one HTTP response, closable from any thread.

    Threads: one consumer thread iterates. :meth:`close` may be called from ANY thread (e.g. a
    canceller); it shuts the socket down so a read blocked in the consumer returns, and the
    iteration then simply ends. Use it as a context manager so the response is always closed.
    """

    def __init__(
        self,
        response: requests.Response,
        parse: Callable[[Any], T],
        *,
        event_name: Optional[str] = None,
        where: str = "",
    ) -> None:
        self._response = response
        self._parse = parse
        self._event_name = event_name
        self._where = where
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._iter: Optional[Iterator[T]] = None

    def __repr__(self) -> str:
        return f"EventStream({self._where!r}, closed={self.closed})"

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __enter__(self) -> "EventStream[T]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._iter is None:
            self._iter = self._generate()
        return next(self._iter)

    def close(self) -> None:
        """Stop the stream and release the connection. Safe from any thread, idempotent."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        sock = _socket_of(self._response)
        if sock is not None:
            try:
                # close() alone does not wake a recv() blocked in another thread; shutdown does.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._response.close()
        except Exception:  # closing a half-read response may raise inside urllib3; it is closed anyway
            logger.debug("error while closing %s", self._where, exc_info=True)

    def _generate(self) -> Iterator[T]:
        try:
            for msg in self._messages():
                if self._closed.is_set():
                    return
                if self._event_name is not None and msg.event != self._event_name:
                    logger.debug("%s: skipping SSE event %r", self._where, msg.event)
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError as exc:
                    raise YagnaProtocolError(
                        f"{self._where}: SSE data is not JSON: {msg.data[:200]!r}"
                    ) from exc
                yield self._parse(payload)
        finally:
            self.close()

    def _messages(self) -> Iterator[SseMessage]:
        try:
            yield from iter_sse(self._chunks())
        except YagnaProtocolError as exc:  # an overlong line: say which stream sent it
            raise YagnaProtocolError(f"{self._where}: {exc}") from exc

    def _chunks(self) -> Iterator[bytes]:
        # A chunked stream (yagna's) is read in pieces of at most READ_SIZE, so one huge HTTP chunk
        # is never held whole; other streams yield what arrives (a size would wait to fill it).
        chunked = getattr(self._response.raw, "chunked", False) is True
        it = self._response.iter_content(chunk_size=READ_SIZE if chunked else None)
        while True:
            try:
                chunk = next(it)
            except StopIteration:
                return
            except Exception as exc:
                if self._closed.is_set():
                    return  # our own close() broke the read: a normal end
                if isinstance(exc, (requests.exceptions.ConnectionError,)) and "timed out" in str(exc).lower():
                    raise YagnaTimeoutError(f"{self._where}: no data from yagna in time") from exc
                # The output in flight is lost: a batch stream cannot be resumed (no replay).
                raise YagnaLostError(f"{self._where}: the event stream broke (yagna went away?): {exc}") from exc
            if self._closed.is_set():
                return
            yield chunk


def _socket_of(response: requests.Response) -> Optional[socket.socket]:
    """The socket under a streaming response, if it can be found (urllib3 1.x and 2.x)."""
    raw = getattr(response, "raw", None)
    for path in (("_connection", "sock"), ("connection", "sock"), ("_fp", "fp", "raw", "_sock")):
        obj: Any = raw
        for attr in path:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, socket.socket):
            return obj
    return None
