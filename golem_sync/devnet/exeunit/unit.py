"""The exe-unit of one activity: the GSB protocol handler, state and usage reports, command semantics.

yagna forwards the requestor's activity calls (Exec, GetExecBatchResults, StreamExecBatchResults,
GetActivityState, GetActivityUsage, GetRunningCommand) over its GSB bus to
``/public/exeunit/<activityId>``; :class:`ExeUnit` answers them and reports state and usage back to
yagna (``/local/activity/SetActivityState`` / ``SetActivityUsage``). Batches run on the
:mod:`.batch` engine, ``run`` commands on the :mod:`.process` runner, paths map through :mod:`.paths`.

**Commands run on the host, unsandboxed**, as the user running the emulator: this is a test
network for the requestor's code, not a sandbox. ``run`` executes ``entry_point`` + ``args`` in a
per-activity directory. Only the env given in ``deploy`` plus PATH, LANG, TZ and HOME (= the mapped
``/golem/work``) reach the command.

Threads:
- the :class:`~golem_sync.devnet.gsb.GsbConnection` reader thread reads the bus; its worker pool
  runs the request handlers (waits for results and event streams block only a worker);
- one ``exeunit-batch-<id>`` thread per Exec runs that batch's commands; batches run one at a
  time, like a real exe-unit (the engine's lock);
- one ``exeunit-heartbeat`` thread reports usage every ``heartbeat_interval`` seconds.
The activity state is guarded by ``_state_lock``, batches by the engine's condition; ``stop`` and
``crash`` may be called from any thread.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs

from ..errors import DevnetConfigError, ExeUnitError, GsbError
from ..gsb import GsbConnection, GsbRequest
from ..transfer import Transfers
from .batch import Batch, BatchEngine, validate_command
from .paths import CONTAINER_DIRS, PathMapper
from .process import HOST_ENV, CommandFailed, ProcessRunner

__all__ = ["ExeUnit", "ExeUnitFaults"]

logger = logging.getLogger("golem_sync.devnet.exeunit")

_STATES = ("New", "Initialized", "Deployed", "Ready", "Terminated", "Unresponsive")
_USAGE_DURATION = "golem.usage.duration_sec"
_USAGE_CPU = "golem.usage.cpu_sec"
_GSB_TIMEOUT = 5.0


def _non_negative(_inst: object, attribute: "attrs.Attribute[Any]", value: Optional[float]) -> None:
    if value is not None and (not isinstance(value, (int, float)) or value < 0):
        raise DevnetConfigError(f"ExeUnitFaults.{attribute.name} must be a number >= 0, got {value!r}")


#: The ways :attr:`ExeUnitFaults.bogus_result_index` garbles the results of a batch with a ``run``.
BOGUS_INDEX_MODES = ("beyond", "duplicate", "swap", "extra")


def _bogus_mode(_inst: object, attribute: "attrs.Attribute[Any]", value: Optional[str]) -> None:
    if value is not None and value not in BOGUS_INDEX_MODES:
        raise DevnetConfigError(f"ExeUnitFaults.{attribute.name} must be one of {BOGUS_INDEX_MODES} or None, "
                                f"got {value!r}")


@attrs.frozen
class ExeUnitFaults:
    """Fault knobs for tests.

    Attributes:
        stop_heartbeat_after: stop reporting usage this many seconds after start (yagna then marks
            the activity Unresponsive after ~5 s).
        crash_after: :meth:`ExeUnit.crash` this many seconds after start.
        result_delay: wait this long before publishing each command's result.
        stdout_flood_mb: hostile output: every ``run`` answers this many MB (10**6 bytes) of ``x`` as
            its stdout, ignoring the requested capture limits, and streams them as ONE stdout event
            (one SSE line of that size), whatever the command printed.
        invalid_utf8: hostile output: every ``run``'s stdout and stderr (result and events) are sent
            as bytes (``Bin``) with invalid UTF-8 appended (``\xff\xfe``), whatever format was asked.
        bogus_result_index: hostile results for batches with a ``run``: ``"beyond"`` numbers each
            result past the batch's end, ``"duplicate"`` repeats every result, ``"swap"`` reverses
            their order, ``"extra"`` adds a result for a command that does not exist.
    """

    stop_heartbeat_after: Optional[float] = attrs.field(default=None, validator=_non_negative)
    crash_after: Optional[float] = attrs.field(default=None, validator=_non_negative)
    result_delay: float = attrs.field(default=0.0, validator=_non_negative)
    stdout_flood_mb: Optional[float] = attrs.field(default=None, validator=_non_negative)
    invalid_utf8: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    bogus_result_index: Optional[str] = attrs.field(default=None, validator=_bogus_mode)


_INVALID_UTF8 = b"\xff\xfe"

#: Output events one command may add to its batch (they are kept for replay); later output is only captured.
MAX_STREAMED_OUTPUT = 64 * 1024 * 1024


def _as_bytes(value: Any) -> bytes:
    """A result output (``str``, a list of byte values or None) as bytes."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value or [])


def _binary_capture(capture: Any) -> Any:
    """An ExeScript capture spec with every stream's format switched to ``bin``."""
    if not isinstance(capture, dict):
        return {name: {"atEnd": {"format": "bin"}} for name in ("stdout", "stderr")}
    binary: Dict[str, Any] = {}
    for name, mode in capture.items():
        if isinstance(mode, dict) and len(mode) == 1:
            (kind, opts), = mode.items()
            binary[name] = {kind: dict(opts if isinstance(opts, dict) else {}, format="bin")}
        else:
            binary[name] = mode
    return binary


def _err(kind: str, text: str) -> Dict[str, Any]:
    """A serde ``Err(RpcMessageError::<kind>(text))``: ``badRequest``, ``notFound``, ``service``..."""
    return {"Err": {kind: text}}


class ExeUnit:
    """Emulates the exe-unit of one activity; see the module docstring (commands run unsandboxed).

    Args:
        gsb_url: the yagna node's GSB URL (``tcp://127.0.0.1:PORT``).
        activity_id, agreement_id: the activity this exe-unit serves.
        work_dir: the per-activity directory; container paths map below it.
        usage_vector: the offer's ``golem.com.usage.vector``; :meth:`usage` follows its order.
        faults: fault knobs (:class:`ExeUnitFaults`).
        heartbeat_interval: seconds between usage reports (yagna wants one at least every 5 s).
        replay_events: a StreamExecBatchResults call first gets the batch's past events. A real
            exe-unit does not replay; on a local devnet a fast command would otherwise finish
            before the requestor's stream is open.
    """

    def __init__(
        self,
        *,
        gsb_url: str,
        activity_id: str,
        agreement_id: str,
        work_dir: Path,
        usage_vector: Sequence[str],
        faults: Optional[ExeUnitFaults] = None,
        heartbeat_interval: float = 1.0,
        replay_events: bool = True,
    ) -> None:
        if not activity_id or "/" in activity_id:
            raise DevnetConfigError(f"invalid activity_id {activity_id!r}")
        if not 0.05 <= heartbeat_interval <= 4.0:
            raise DevnetConfigError("heartbeat_interval must be within 0.05..4 s (yagna: 5 s limit)")
        self.gsb_url = gsb_url
        self.activity_id = activity_id
        self.agreement_id = agreement_id
        self.paths = PathMapper(work_dir)
        self.work_dir = self.paths.work_dir
        self.usage_vector = list(usage_vector)
        self.faults = faults or ExeUnitFaults()
        self.heartbeat_interval = heartbeat_interval
        self.replay_events = replay_events
        self.address = f"/public/exeunit/{activity_id}"
        #: What the last ``deploy`` asked for: env, net, hosts, hostname, volumes, progress.
        self.deployment: Dict[str, Any] = {}
        self._state_lock = threading.Lock()
        self._state = "New"
        self._stopped = threading.Event()  # set by stop() and crash(): ends every loop
        self._batches = BatchEngine(self._execute, self._stopped, result_delay=self.faults.result_delay)
        self._processes = ProcessRunner(self._stopped)
        self._heartbeat_off = threading.Event()
        self._conn: Optional[GsbConnection] = None
        self._started_at: Optional[float] = None
        self._threads: List[threading.Thread] = []

    def __repr__(self) -> str:
        return f"ExeUnit(activity_id={self.activity_id!r}, state={self.state!r})"

    # -- public ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The activity state as this exe-unit sees it (``Initialized``, ``Ready``, ...)."""
        with self._state_lock:
            return self._state

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def connection(self) -> Optional[GsbConnection]:
        """The GSB connection once :meth:`start` ran (for tests that talk to the unit directly)."""
        return self._conn

    def container_path(self, path: str) -> Path:
        """The host path of a container path; raises :class:`ExeUnitError` if it escapes."""
        return self.paths.container_path(path)

    def start(self, timeout: float = 10.0) -> None:
        """Connect, register the exe-unit address, report Initialized, start the heartbeat."""
        if self._conn is not None:
            raise ExeUnitError("ExeUnit already started")
        for cdir in CONTAINER_DIRS:
            self.container_path(cdir).mkdir(parents=True, exist_ok=True)
        conn = GsbConnection(self.gsb_url, f"exeunit-{self.activity_id[:8]}")
        self._conn = conn
        try:
            conn.connect(timeout)
            conn.bind(self.address, self._handle, timeout)
            self._started_at = time.monotonic()
            self._set_state("Initialized")
        except BaseException:
            conn.close()
            raise
        self._spawn(self._heartbeat_loop, "exeunit-heartbeat")
        if self.faults.crash_after is not None:
            self._spawn(self._crash_later, "exeunit-crash")
        logger.info("exe-unit for activity %s started in %s", self.activity_id, self.work_dir)

    def usage(self) -> List[float]:
        """Current usage in ``usage_vector`` order (unknown counters are 0.0)."""
        started = self._started_at
        duration = time.monotonic() - started if started is not None else 0.0
        cpu = self._processes.cpu_seconds()
        values = {_USAGE_DURATION: duration, _USAGE_CPU: cpu}
        return [float(values.get(name, 0.0)) for name in self.usage_vector]

    def stop(self, reason: Optional[str] = None, timeout: float = 5.0) -> None:
        """Report Terminated, unregister, close the connection and kill any running command.

        Idempotent; waits at most about ``timeout`` s in total.
        """
        if self._stopped.is_set():
            return
        conn = self._conn
        with self._state_lock:
            already_terminated = self._state == "Terminated"
            self._state = "Terminated"
        if conn is not None and not conn.closed:
            if not already_terminated:
                self._report_state("Terminated", reason=reason, timeout=timeout / 2)
            try:
                conn.unbind(self.address, timeout / 2)
            except GsbError as exc:
                logger.debug("unbind %s: %s", self.address, exc)
        self._shutdown()
        logger.info("exe-unit for activity %s stopped (%s)", self.activity_id, reason)

    def crash(self) -> None:
        """Fault knob: drop the connection and stop heartbeating without telling yagna."""
        if self._stopped.is_set():
            return
        logger.info("exe-unit for activity %s crashes (fault injection)", self.activity_id)
        self._shutdown()

    def wait_stopped(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until the exe-unit stopped (e.g. by a terminate command)."""
        return self._stopped.wait(timeout)

    # -- internals: lifecycle ------------------------------------------------------------------

    def _spawn(self, target: Any, name: str, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        # Forget finished batch threads so a long-lived unit does not collect them.
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def _shutdown(self) -> None:
        self._stopped.set()
        self._heartbeat_off.set()
        self._processes.kill()
        self._batches.wake()
        if self._conn is not None:
            self._conn.close()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(timeout=2.0)

    def _crash_later(self) -> None:
        delay = self.faults.crash_after
        assert delay is not None
        if not self._stopped.wait(delay):
            self.crash()

    def _heartbeat_loop(self) -> None:
        started = self._started_at or time.monotonic()
        limit = self.faults.stop_heartbeat_after
        while not self._heartbeat_off.is_set():
            if limit is not None and time.monotonic() - started >= limit:
                logger.info("exe-unit %s stops heartbeating (fault injection)", self.activity_id)
                return
            self._report_usage()
            if self._heartbeat_off.wait(self.heartbeat_interval):
                return

    def _report_usage(self) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            return
        body = {
            "activityId": self.activity_id,
            "usage": {"currentUsage": self.usage(), "timestamp": int(time.time())},
            "timeout": None,
        }
        try:
            reply = conn.call("/local/activity/SetActivityUsage", body, _GSB_TIMEOUT)
            if isinstance(reply, dict) and "Err" in reply:
                logger.warning("SetActivityUsage for %s: %r", self.activity_id, reply["Err"])
        except GsbError as exc:
            logger.debug("SetActivityUsage for %s failed: %s", self.activity_id, exc)

    def _set_state(self, state: str, reason: Optional[str] = None) -> None:
        with self._state_lock:
            if self._state == "Terminated":
                return
            self._state = state
        self._report_state(state, reason=reason)

    def _report_state(self, state: str, *, reason: Optional[str] = None,
                      error: Optional[str] = None, timeout: float = _GSB_TIMEOUT) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            return
        body = {
            "activityId": self.activity_id,
            "state": {"state": [state, None], "reason": reason, "errorMessage": error},
            "timeout": None,
            "credentials": None,
        }
        try:
            reply = conn.call("/local/activity/SetActivityState", body, timeout)
        except GsbError as exc:
            logger.warning("SetActivityState(%s) for %s failed: %s", state, self.activity_id, exc)
            return
        if isinstance(reply, dict) and "Err" in reply:
            logger.warning("SetActivityState(%s) for %s: %r", state, self.activity_id, reply["Err"])

    # -- internals: GSB handlers (worker pool threads) -----------------------------------------

    def _handle(self, request: GsbRequest) -> None:
        method = request.method
        try:
            body = request.body
        except GsbError as exc:
            request.reply(_err("badRequest", f"undecodable {method} body: {exc}"))
            return
        if not isinstance(body, dict):
            request.reply(_err("badRequest", f"{method}: body must be a map"))
            return
        activity_id = body.get("activityId", body.get("activity_id"))
        if activity_id != self.activity_id:
            request.reply(_err("badRequest", f"wrong activity id {activity_id!r}"))
            return
        if method == "StreamExecBatchResults":
            self._on_stream(request, body)
            return
        handler = {
            "Exec": self._on_exec,
            "GetExecBatchResults": self._on_get_results,
            "GetActivityState": self._on_get_state,
            "GetActivityUsage": self._on_get_usage,
            "GetRunningCommand": self._on_get_running,
        }.get(method)
        if handler is None:
            request.reply(_err("badRequest", f"unsupported message {method}"))
            return
        request.reply(handler(body))

    def _on_get_state(self, body: Dict[str, Any]) -> Dict[str, Any]:
        return {"Ok": {"state": [self.state, None], "reason": None, "errorMessage": None}}

    def _on_get_usage(self, body: Dict[str, Any]) -> Dict[str, Any]:
        return {"Ok": {"currentUsage": self.usage(), "timestamp": int(time.time())}}

    def _on_get_running(self, body: Dict[str, Any]) -> Dict[str, Any]:
        running = self._batches.running_commands()
        if not running:
            return _err("notFound", f"No running command within activity: {self.activity_id}")
        return {"Ok": running}

    def _on_exec(self, body: Dict[str, Any]) -> Dict[str, Any]:
        batch_id = body.get("batchId") or uuid.uuid4().hex
        script = body.get("exeScript")
        if not isinstance(batch_id, str) or not isinstance(script, list):
            return _err("badRequest", "Exec needs batchId (string) and exeScript (list)")
        for index, command in enumerate(script):
            problem = validate_command(command)
            if problem:
                return _err("badRequest", f"ExeScript command {index}: {problem}")
        if self.state == "Terminated" or self._stopped.is_set():
            return _err("activity", "activity is terminated")
        batch = self._batches.create(batch_id, script)
        if batch is None:
            return _err("badRequest", f"Batch {batch_id} already exists")
        self._spawn(self._batches.run, f"exeunit-batch-{batch_id[:8]}", batch)
        return {"Ok": batch_id}

    def _on_get_results(self, body: Dict[str, Any]) -> Any:
        batch_id = body.get("batchId")
        timeout = body.get("timeout")
        index = body.get("commandIndex")
        wait = float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else 0.0
        if index is not None and (not isinstance(index, int) or index < 0):
            return _err("badRequest", f"bad commandIndex {index!r}")
        batch = self._batches.get(batch_id)
        if batch is None:
            return _err("notFound", f"batch_id = {batch_id}")
        results = self._batches.wait_results(batch, index, wait)
        if results is None:
            return {"Err": "timeout"}  # yagna maps RpcMessageError::Timeout to 408
        return {"Ok": self._garble(batch, results)}

    def _garble(self, batch: Batch, results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The ``bogus_result_index`` fault knob: wrong indices on a batch that runs something."""
        mode = self.faults.bogus_result_index
        if mode is None or not results or not any("run" in command for command in batch.commands):
            return results
        size = len(batch.commands)
        if mode == "beyond":
            return [dict(r, index=r["index"] + size + 5) for r in results]
        if mode == "duplicate":
            return [r for r in results for _ in (0, 1)]
        if mode == "swap":
            return list(reversed(results))
        return results + [dict(results[-1], index=size, result="Ok", isBatchFinished=True)]  # "extra"

    def _on_stream(self, request: GsbRequest, body: Dict[str, Any]) -> None:
        batch_id = body.get("batch_id", body.get("batchId"))
        batch = self._batches.get(batch_id)
        if batch is None:
            request.reply_error(f"Unknown batch: {batch_id}", 400)
            return
        conn = self._conn
        for pending, done in self._batches.events(batch, replay=self.replay_events):
            for event in pending:
                request.reply_partial({"Ok": event})
            if done or (conn is not None and conn.closed):
                break
        request.end_stream()

    # -- internals: what each command does (batch threads) ----------------------------------------

    def _execute(self, batch: Batch, index: int, command: Dict[str, Any]) -> Tuple[Any, Any]:
        (name, args), = command.items()
        args = args or {}
        state = self.state
        if state == "Terminated":
            raise ExeUnitError("activity is terminated")
        if name == "deploy":
            self.deployment = {key: args.get(key) for key in
                               ("env", "net", "hosts", "hostname", "volumes", "progress")}
            self._set_state("Deployed")
            return None, None
        if name == "start":
            if state not in ("Deployed", "Ready"):
                raise ExeUnitError(f"start needs a deployed activity (state {state})")
            self.deployment["start_args"] = list(args.get("args") or [])
            self._set_state("Ready")
            return None, None
        if name == "terminate":
            self._set_state("Terminated")
            return None, None
        if name == "sign":
            raise ExeUnitError("sign is not supported by the devnet exe-unit")
        if state != "Ready" and name == "run":
            raise ExeUnitError(f"run needs a started activity (state {state})")
        if name == "run":
            return self._run_process(batch, index, args)
        if name == "transfer":
            assert self._conn is not None
            Transfers(self._conn, self.container_path, self.work_dir, self._stopped.is_set).run(
                str(args.get("from", "")), str(args.get("to", "")), args)
            return None, None
        raise ExeUnitError(f"unknown command {name!r}")

    def _run_process(self, batch: Batch, index: int, args: Dict[str, Any]) -> Tuple[Any, Any]:
        entry = args.get("entry_point")
        if not isinstance(entry, str) or not entry:
            raise ExeUnitError("run needs entry_point")
        argv = [self.paths.map_arg(entry)] + [self.paths.map_arg(str(a)) for a in (args.get("args") or [])]
        cwd = self.container_path("/golem/work")
        env = {k: os.environ[k] for k in HOST_ENV if k in os.environ}
        env["HOME"] = str(cwd)
        deploy_env = self.deployment.get("env") or {}
        env.update({str(k): str(v) for k, v in deploy_env.items()})

        faults = self.faults
        if faults.stdout_flood_mb is not None:
            flood = "x" * int(faults.stdout_flood_mb * 1_000_000)
            self._batches.emit(batch, index, {"stdout": flood})  # one event: one huge SSE line

        streamed = [0]  # output bytes sent as events for this command

        def on_output(stream: str, data: bytes) -> None:
            if faults.stdout_flood_mb is not None:
                return
            streamed[0] += len(data)
            if streamed[0] > MAX_STREAMED_OUTPUT:  # the batch keeps its events: bound what they hold
                if streamed[0] - len(data) <= MAX_STREAMED_OUTPUT:
                    logger.warning("command %d of batch %s printed more than %d bytes: no more output events",
                                   index, batch.batch_id, MAX_STREAMED_OUTPUT)
                return
            if faults.invalid_utf8:
                self._batches.emit(batch, index, {stream: list(data + _INVALID_UTF8)})
                return
            self._batches.emit(batch, index, {stream: data.decode("utf-8", "replace")})

        try:
            capture = args.get("capture")
            if faults.invalid_utf8:  # the command's own bytes, not their lossy text
                capture = _binary_capture(capture)
            outputs = self._processes.run(argv, cwd=cwd, env=env, capture=capture, on_output=on_output)
        except CommandFailed as exc:
            exc.outputs = self._hostile(exc.outputs)
            raise
        return self._hostile(outputs)

    def _hostile(self, outputs: Tuple[Any, Any]) -> Tuple[Any, Any]:
        """A ``run``'s result outputs as the hostile-output fault knobs change them."""
        stdout, stderr = outputs
        if self.faults.stdout_flood_mb is not None:
            stdout = "x" * int(self.faults.stdout_flood_mb * 1_000_000)  # ignores the capture limits
        if self.faults.invalid_utf8:
            stdout, stderr = (list(_as_bytes(v) + _INVALID_UTF8) for v in (stdout, stderr))
        return stdout, stderr
