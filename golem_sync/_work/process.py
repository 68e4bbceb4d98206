"""A command running on the provider whose stdout and stderr arrive line by line while it runs.

Built on the batch's SSE event stream (``Accept: text/event-stream``). yagna never ends that
stream by itself (it only sends ``:ping`` every 15 s), so :class:`RemoteProcess` closes it after
the command's ``finished`` event, on the first error, on its command timeout, on ``close()`` and
when the job is cancelled — the connection is never left open.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Tuple

import attrs

from .._cancel import CancelToken, Deadline, Inbox
from ..errors import (GolemActivityError, GolemCancelledError, GolemConfigError, GolemError, GolemTimeoutError,
                      YagnaResponseTooLargeError)
from ..yagna.client import YagnaClient
from ..yagna.models import RuntimeEvent
from ..yagna.transport import Transport
from .result import Result

if TYPE_CHECKING:
    from .._activity import Activity
    from ..yagna.activity import BatchStream

__all__ = ["RemoteProcess", "LineStream", "BUFFER_LIMIT"]

logger = logging.getLogger("golem_sync.work.process")

_EXIT_CODE = re.compile(r"code (-?\d+)")


class _End(Exception):
    """Closes a line inbox: the stream ended normally."""


#: Default budget of unread output kept per stream, in characters (about bytes for ASCII text).
BUFFER_LIMIT = 4 * 1024 * 1024
#: What one buffered line costs on top of its characters (Python's per-string overhead), so that
#: many short lines are bounded by the same budget as a few long ones.
LINE_OVERHEAD = 64


class LineStream:
    """The lines of one output stream (``stdout`` or ``stderr``), without their line endings.

    Iterate it once, from one thread: ``for line in process.stdout: ...``. Iteration ends when the
    command has finished and every line was read; it raises GolemTimeoutError when the command
    timeout runs out and GolemCancelledError when the job is cancelled.

    Memory is bounded: unread lines are kept up to ``limit`` characters (each line counting
    ``LINE_OVERHEAD`` more; default :data:`BUFFER_LIMIT`, 4 MiB). Past it the OLDEST unread lines
    are dropped, ``truncated`` becomes True, ``dropped_lines``/``dropped_chars`` count the loss and
    one WARNING is logged per stream; a reader that keeps up loses nothing. A line longer than
    ``max_line`` (a quarter of ``limit``; e.g. a progress bar redrawn with ``\r``, or binary
    output) is delivered in pieces of ``max_line`` characters, counted in ``split_lines``.

    Threads: the process's reader thread feeds it (``_feed``); ``_end`` may run on any thread (a
    canceller); one consumer thread reads. The counters are written under the stream's and the
    inbox's locks and are safe to read from any thread.
    """

    def __init__(self, name: str, token: CancelToken, *, limit: int = BUFFER_LIMIT, label: str = "") -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise GolemConfigError(f"the output buffer limit must be a positive integer, got {limit!r}")
        self.name = name
        self.limit = limit
        self.max_line = max(1, limit // 4)
        self.split_lines = 0
        self._label = label or name
        self._token = token
        self._inbox: Inbox[str] = Inbox(limit=limit, weight=_line_weight)
        self._parts: List[str] = []  # the current unterminated line, in pieces (joined once)
        self._part_len = 0
        self._lock = threading.Lock()  # the reader feeds while a canceller may end the stream
        self._ended = False
        self._warned = False

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                yield self.next_line(None)
            except _End:
                return

    @property
    def truncated(self) -> bool:
        """True once unread output had to be dropped to stay within ``limit``."""
        return self._inbox.dropped > 0

    @property
    def dropped_lines(self) -> int:
        """How many unread lines (or pieces of long lines) were dropped, oldest first."""
        return self._inbox.dropped

    @property
    def dropped_chars(self) -> int:
        """How many characters those dropped lines held."""
        return self._inbox.dropped_weight - LINE_OVERHEAD * self._inbox.dropped

    def next_line(self, timeout: Optional[float]) -> str:
        """The next line; raises GolemTimeoutError if none comes within ``timeout`` seconds."""
        return self._inbox.get(self._token, timeout, phase=f"{self.name} line")

    def read_all(self, timeout: Optional[float] = None) -> List[str]:
        """Every remaining line, once the stream has ended (bounded by ``timeout``)."""
        deadline = Deadline(timeout)
        lines = []
        while True:
            try:
                lines.append(self.next_line(deadline.remaining()))
            except _End:
                return lines

    # -- producer side (the reader thread) ---------------------------------------------------

    def _feed(self, chunk: str) -> None:
        with self._lock:
            if self._ended:
                return
            lines: List[str] = []
            first, *rest = chunk.split("\n")
            self._extend(first, lines)
            for piece in rest:  # each newline completes the current line
                lines.append(self._take_line())
                self._extend(piece, lines)
            self._inbox.put_many(lines)
            warn = self.truncated and not self._warned
            self._warned = self._warned or warn
        if warn:
            self._warn()

    def _end(self, error: Optional[BaseException] = None) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
            if self._parts:
                self._inbox.put(self._take_line())
            self._inbox.close(error if error is not None else _End())
            warn = self.truncated and not self._warned
            self._warned = self._warned or warn
        if warn:
            self._warn()

    def _extend(self, text: str, out: List[str]) -> None:
        """Add ``text`` to the current line; cut pieces of ``max_line`` off it when it grows past that."""
        if not text:
            return
        self._parts.append(text)
        self._part_len += len(text)
        if self._part_len <= self.max_line:
            return
        joined = "".join(self._parts)  # amortised linear: at least half of it leaves as pieces
        at = 0
        while len(joined) - at > self.max_line:
            out.append(joined[at:at + self.max_line])
            at += self.max_line
            self.split_lines += 1
        rest = joined[at:]
        self._parts, self._part_len = [rest], len(rest)

    def _take_line(self) -> str:
        line = "".join(self._parts)
        self._parts, self._part_len = [], 0
        return line[:-1] if line.endswith("\r") else line

    def _warn(self) -> None:
        logger.warning("%s: more than %d characters of unread output; dropping the oldest lines "
                       "(see .truncated and .dropped_lines; read the stream or raise buffer_limit)",
                       self._label, self.limit)


def _line_weight(line: str) -> int:
    return len(line) + LINE_OVERHEAD


class RemoteProcess:
    """One ``run`` command whose output streams in: ``ctx.spawn("for i in 1 2 3; do echo $i; sleep 1; done")``.

    Use ``process.stdout`` / ``process.stderr`` (iterables of lines) and ``wait(timeout)`` for the
    exit code. ``close()`` stops reading (the command itself keeps running on the provider until it
    ends, as on yagna a single command cannot be stopped without destroying the activity).

    Output nobody reads is bounded: each stream keeps at most ``buffer_limit`` characters of
    unread lines (default :data:`BUFFER_LIMIT`, 4 MiB) and then drops the oldest ones, so a caller
    that only calls ``wait()`` holds a few MB at most; ``stdout.truncated`` tells (see
    :class:`LineStream`).

    Threads: two daemon threads per process, both ending with it.
    ``golem-process-<batch>`` owns the SSE stream: it reads events and fans stdout and stderr
    chunks into two line inboxes. A reader thread (rather than reading in the consumer's
    iteration) is used so that stdout and stderr can be consumed independently, or not at all,
    without one stream's unread output stalling the other and without ``wait()`` needing a reader.
    ``golem-process-<batch>-watch`` long-polls the batch result itself, through a private
    abortable client (one connection; never the network's shared helper pool, which N spawned
    processes would otherwise fill, queueing every other job's polls behind them). Each poll is
    bounded by ``poll_sec`` (plus the transport's margin), and when the process is done its
    transport is aborted, which ends a poll in flight at once. The watcher enforces the command
    timeout and, if the stream missed the ``finished`` event (a real exe-unit does not replay
    events sent before the stream opened), completes the process from the result and closes the
    stream.
    ``wait``, ``close``, ``returncode`` and ``result`` are safe from any thread; ``close`` and the
    job's cancellation close the stream from whichever thread calls them.
    """

    #: After the batch result says "finished", how long the stream may still deliver its last events.
    FINISH_GRACE_SEC = 2.0

    def __init__(self, activity: "Activity", batch_id: str, stream: "BatchStream", token: CancelToken,
                 timeout: float, *, poll_sec: float = 5.0,
                 on_timeout: Optional[Callable[[], None]] = None, buffer_limit: int = BUFFER_LIMIT,
                 poll_client: Optional["YagnaClient"] = None, max_body: Optional[int] = None) -> None:
        """``poll_client`` is what the watcher polls with; its transport is aborted when the process
        is done, so give one made with ``Transport(..., abortable=True)``. By default the process
        makes (and closes) a private abortable copy of the activity's client. ``max_body`` bounds
        each result poll's answer (bytes): a larger one ends the process with GolemActivityError."""
        self.activity_id = activity.activity_id
        self.batch_id = batch_id
        self._activity = activity
        self._stream = stream
        self._token = token
        self._timeout = timeout
        self._deadline = Deadline(timeout)
        self._poll_sec = poll_sec
        self._max_body = max_body
        self._on_timeout = on_timeout
        self._poll_client, self._owns_poll_client = _poll_client_for(activity, poll_client)
        self.stdout = LineStream("stdout", token, limit=buffer_limit, label=f"stdout of batch {batch_id}")
        self.stderr = LineStream("stderr", token, limit=buffer_limit, label=f"stderr of batch {batch_id}")
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._stream_done = threading.Event()
        self._returncode: Optional[int] = None
        self._result: Optional[Result] = None
        self._error: Optional[BaseException] = None
        short = batch_id[:8]
        self._reader = threading.Thread(target=self._read, name=f"golem-process-{short}", daemon=True)
        self._watcher = threading.Thread(target=self._watch, name=f"golem-process-{short}-watch", daemon=True)
        self._started = False
        # Set before registering: an already cancelled token runs the callback at once, and
        # _finish() calls _unregister (a no-op then) and closes the stream.
        self._unregister: Callable[[], None] = lambda: None
        unregister = token.on_cancel(lambda: self._finish(None, GolemCancelledError(token.reason or "cancelled")))
        with self._lock:
            self._started = not self._done.is_set()
            if self._started:
                self._unregister = unregister
        if not self._started:  # cancelled while being built: done, stream closed, no thread to start
            self._close_poll_client()
            return
        try:
            self._reader.start()
            self._watcher.start()
        except BaseException as exc:  # e.g. no thread can be started: close everything, then raise
            self._finish(None, exc)
            if not self._watcher.is_alive():
                self._close_poll_client()
            raise

    def __repr__(self) -> str:
        return f"<RemoteProcess batch={self.batch_id} returncode={self._returncode}>"

    def __enter__(self) -> "RemoteProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public ------------------------------------------------------------------------------

    @property
    def returncode(self) -> Optional[int]:
        """The exit code once the command has finished, else ``None``."""
        return self._returncode

    @property
    def result(self) -> Optional[Result]:
        """The command's Result (``Ok``/``Error``, message) once it has finished."""
        return self._result

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the command to end and return its exit code.

        Raises GolemTimeoutError (phase ``"wait"``) if ``timeout`` passes first (the process goes
        on), GolemTimeoutError (phase ``"command"``) if the command exceeded its own timeout,
        GolemCancelledError if the job was cancelled, and the stream's error if it broke.
        """
        # Cancellation finishes the process (token.on_cancel), so this wait also wakes on cancel.
        if not self._done.wait(timeout):
            raise GolemTimeoutError(f"command of batch {self.batch_id} still running after {timeout:g}s",
                                    phase="wait")
        if self._error is not None:
            raise self._error
        assert self._returncode is not None
        return self._returncode

    def close(self) -> None:
        """Stop reading and close the event stream now (from any thread); idempotent."""
        self._finish(None, None)

    def join(self, timeout: float = 5.0) -> bool:
        """Wait for both helper threads to end (after the process is done); True if they did."""
        threads = [t for t in (self._reader, self._watcher) if self._started and t.ident is not None]
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)

    # -- the reader thread -------------------------------------------------------------------

    def _read(self) -> None:
        error: Optional[BaseException] = None
        try:
            for event in self._stream:
                if self._on_event(event):
                    return
        except GolemError as exc:
            error = exc
        except Exception as exc:  # a bug must end the process, not leave wait() hanging
            logger.exception("reading the event stream of batch %s failed", self.batch_id)
            error = exc
        finally:
            self._stream_done.set()
        if not self._done.is_set():
            if error is None:
                logger.debug("event stream of batch %s ended early; the result poll completes it", self.batch_id)
            else:
                self._finish(None, error)

    def _on_event(self, event: RuntimeEvent) -> bool:
        """Handle one event; True when the process is complete."""
        if event.kind in ("stdout", "stderr"):
            chunk = event.output
            text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else (chunk or "")
            (self.stdout if event.kind == "stdout" else self.stderr)._feed(text)
            return False
        if event.kind == "finished":
            code = event.return_code if event.return_code is not None else -1
            result = Result(index=event.index, result="Ok" if code == 0 else "Error", message=event.message,
                            event_date=event.timestamp, is_batch_finished=True)
            self._finish(code, None, result)
            return True
        return False

    # -- the watcher thread ------------------------------------------------------------------

    def _watch(self) -> None:
        try:
            self._poll_results()
        finally:
            self._close_poll_client()

    def _poll_results(self) -> None:
        client = self._poll_client
        while not self._done.is_set():
            if self._deadline.expired:
                if self._on_timeout is not None:
                    self._on_timeout()  # before waking wait(): the next command must see the retirement
                self._finish(None, GolemTimeoutError(
                    f"command of batch {self.batch_id} on activity {self.activity_id} did not finish "
                    f"within {self._timeout:g}s", phase="command"))
                return
            try:
                # On this thread, bounded by the long-poll timeout; _finish() aborts it at once.
                results = client.activity.get_batch_results(
                    self.activity_id, self.batch_id, timeout=max(0.1, self._deadline.cap(self._poll_sec)),
                    max_body=self._max_body)
            except YagnaResponseTooLargeError as exc:
                self._finish(None, GolemActivityError(
                    f"the result of batch {self.batch_id} on activity {self.activity_id} is larger than "
                    f"{exc.limit} bytes: the provider sent more output than the cap asked for "
                    f"(work.max_output_bytes); not read further"))
                return
            except GolemError as exc:
                if not self._done.is_set():
                    logger.debug("polling batch %s failed: %s", self.batch_id, exc)
                    self._done.wait(min(1.0, self._deadline.cap(1.0)))  # back off, still wake on close
                continue
            if self._done.is_set():
                return
            finished = [r for r in results if r.is_batch_finished]
            if finished:
                # The stream normally delivers "finished" about now; give it a moment to do so.
                if not self._stream_done.wait(self.FINISH_GRACE_SEC) and not self._done.is_set():
                    raw = finished[-1]
                    code = 0 if str(raw.result) == "Ok" else _exit_code(raw.message)
                    self._finish(code, None, Result.of(raw))
                return

    def _abort_poll(self) -> None:
        """End the watcher's poll in flight (any thread; only shuts a socket down)."""
        abort = getattr(getattr(self._poll_client, "transport", None), "abort", None)
        if abort is not None:
            try:
                abort()
            except Exception:  # a transport that cannot abort just lets the poll run out
                logger.debug("could not abort the result poll of batch %s", self.batch_id, exc_info=True)

    def _close_poll_client(self) -> None:
        if self._owns_poll_client:
            self._poll_client.transport.close()  # the client does not own a transport it was given

    # -- completion (any thread) -------------------------------------------------------------

    def _finish(self, code: Optional[int], error: Optional[BaseException], result: Optional[Result] = None) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._returncode = code
            self._error = error
            self._result = result
            self._done.set()
            unregister = self._unregister
        unregister()
        self._abort_poll()
        self._stream.close()  # wakes the reader if it is blocked in a read
        line_error = error if isinstance(error, (GolemTimeoutError, GolemCancelledError)) else None
        self.stdout._end(line_error)
        self.stderr._end(line_error)


def _poll_client_for(activity: "Activity", given: Optional["YagnaClient"]) -> Tuple[Any, bool]:
    """The watcher's client and whether the process owns (and closes) it."""
    if given is not None:
        return given, False
    client = activity.client
    if isinstance(client, YagnaClient):
        # No retries: the poll loop backs off by itself, and abort() must not be retried around.
        config = attrs.evolve(client.config, retries=0, pool_size=1)
        return YagnaClient(transport=Transport(config, abortable=True)), True
    return client, False  # a stand-in client (tests): polled as it is


def _exit_code(message: Optional[str]) -> int:
    found = _EXIT_CODE.search(message or "")
    return int(found.group(1)) if found else -1
