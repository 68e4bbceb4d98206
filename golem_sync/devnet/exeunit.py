"""An exe-unit emulator for the devnet: plays the provider's exe-unit for one activity.

yagna forwards the requestor's activity calls (Exec, GetExecBatchResults, StreamExecBatchResults,
GetActivityState, GetActivityUsage, GetRunningCommand) over its GSB bus to
``/public/exeunit/<activityId>``; this class answers them and reports state and usage back to
yagna (``/local/activity/SetActivityState`` / ``SetActivityUsage``).

**Commands run on the host, unsandboxed**, as the user running the emulator: this is a test
network for the requestor's code, not a sandbox. ``run`` executes ``entry_point`` + ``args`` in a
per-activity directory; container paths (``/golem/work``, ``/golem/input``, ``/golem/output``,
``/golem/resources``, and any other absolute path in transfers) map to ``work_dir/<path>``.
A transfer path escaping ``work_dir`` is refused. Only the env given in ``deploy`` plus PATH, LANG,
TZ and HOME (= the mapped ``/golem/work``) reach the command.

Threads:
- the :class:`~golem_sync.devnet.gsb.GsbConnection` reader thread reads the bus; its worker pool
  runs the request handlers (waits for results and event streams block only a worker);
- one ``exeunit-batch-<id>`` thread per Exec runs that batch's commands; batches run one at a
  time (``_exec_lock``), like a real exe-unit;
- one ``exeunit-heartbeat`` thread reports usage every ``heartbeat_interval`` seconds.
All shared state (state, batches, results, events) is guarded by ``_cond``; ``stop`` and
``crash`` may be called from any thread.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import posixpath
import re
import selectors
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

import attrs
import requests

from .errors import DevnetConfigError, ExeUnitError, GsbError, TransferError
from .gsb import GsbConnection, GsbRequest
from .transfer import Transfers

__all__ = ["ExeUnit", "ExeUnitFaults", "ExeUnitError", "CONTAINER_DIRS"]

logger = logging.getLogger("golem_sync.devnet.exeunit")

#: The container directories a Golem VM image offers; created under ``work_dir`` at start.
CONTAINER_DIRS = ("/golem/work", "/golem/input", "/golem/output", "/golem/resources")

_STATES = ("New", "Initialized", "Deployed", "Ready", "Terminated", "Unresponsive")
_COMMANDS = ("deploy", "start", "run", "transfer", "terminate", "sign")
_USAGE_DURATION = "golem.usage.duration_sec"
_USAGE_CPU = "golem.usage.cpu_sec"
_GSB_TIMEOUT = 5.0
_HOST_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
# A container dir inside a longer argument (e.g. a shell snippet), not part of another word or
# path: "/golem/work/x" and "cd /golem/work;" match, "/golem/workshop" and "/a/golem/work" do not.
_CONTAINER_DIR_RE = re.compile(r"(?<![\w/.])/golem/(?:work|input|output|resources)(?![\w.-])")


def _non_negative(_inst: object, attribute: "attrs.Attribute[Any]", value: Optional[float]) -> None:
    if value is not None and (not isinstance(value, (int, float)) or value < 0):
        raise DevnetConfigError(f"ExeUnitFaults.{attribute.name} must be a number >= 0, got {value!r}")


@attrs.frozen
class ExeUnitFaults:
    """Fault knobs for tests.

    Attributes:
        stop_heartbeat_after: stop reporting usage this many seconds after start (yagna then marks
            the activity Unresponsive after ~5 s).
        crash_after: :meth:`ExeUnit.crash` this many seconds after start.
        result_delay: wait this long before publishing each command's result.
    """

    stop_heartbeat_after: Optional[float] = attrs.field(default=None, validator=_non_negative)
    crash_after: Optional[float] = attrs.field(default=None, validator=_non_negative)
    result_delay: float = attrs.field(default=0.0, validator=_non_negative)


def _utc_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _naive_utc() -> str:
    # RuntimeEvent.timestamp is a chrono NaiveDateTime: no zone suffix.
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _err(kind: str, text: str) -> Dict[str, Any]:
    """A serde ``Err(RpcMessageError::<kind>(text))``: ``badRequest``, ``notFound``, ``service``..."""
    return {"Err": {kind: text}}


class _Batch:
    """One Exec: its commands, results and runtime events (guarded by the ExeUnit's ``_cond``)."""

    def __init__(self, batch_id: str, commands: List[Dict[str, Any]]) -> None:
        self.batch_id = batch_id
        self.commands = commands
        self.results: List[Dict[str, Any]] = []
        self.events: List[Dict[str, Any]] = []
        self.finished = False
        self.running: Optional[int] = None


class _CommandFailed(Exception):
    """A run ended with a non-zero exit code; carries the message and the captured outputs."""

    def __init__(self, message: str, return_code: int, outputs: Tuple[Any, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.return_code = return_code
        self.outputs = outputs


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
        self.work_dir = Path(work_dir).resolve()
        self.usage_vector = list(usage_vector)
        self.faults = faults or ExeUnitFaults()
        self.heartbeat_interval = heartbeat_interval
        self.replay_events = replay_events
        self.address = f"/public/exeunit/{activity_id}"
        #: What the last ``deploy`` asked for: env, net, hosts, hostname, volumes, progress.
        self.deployment: Dict[str, Any] = {}
        self._cond = threading.Condition()
        self._state = "New"
        self._batches: Dict[str, _Batch] = {}
        self._exec_lock = threading.Lock()
        self._stopped = threading.Event()  # set by stop() and crash(): ends every loop
        self._heartbeat_off = threading.Event()
        self._conn: Optional[GsbConnection] = None
        self._started_at: Optional[float] = None
        self._cpu_done = 0.0
        self._child: Optional["subprocess.Popen[bytes]"] = None
        self._threads: List[threading.Thread] = []

    def __repr__(self) -> str:
        return f"ExeUnit(activity_id={self.activity_id!r}, state={self.state!r})"

    # -- public ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The activity state as this exe-unit sees it (``Initialized``, ``Ready``, ...)."""
        with self._cond:
            return self._state

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def container_path(self, path: str) -> Path:
        """The host path of a container path; raises :class:`ExeUnitError` if it escapes."""
        if not path.startswith("/"):
            path = "/golem/work/" + path  # relative container paths are relative to the cwd
        # normpath would clamp "/a/../../x" to "/x"; a path climbing above the container root
        # is a requestor bug or an attack, so it is refused instead.
        depth = 0
        for part in path.split("/"):
            if part == "..":
                depth -= 1
                if depth < 0:
                    raise ExeUnitError(f"container path {path!r} escapes the activity directory")
            elif part not in ("", "."):
                depth += 1
        norm = posixpath.normpath(path)
        host = (self.work_dir / norm.lstrip("/")).resolve()
        if host != self.work_dir and self.work_dir not in host.parents:
            raise ExeUnitError(f"container path {path!r} escapes the activity directory")
        return host

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
        cpu = self._cpu_done + self._child_cpu()
        values = {_USAGE_DURATION: duration, _USAGE_CPU: cpu}
        return [float(values.get(name, 0.0)) for name in self.usage_vector]

    def stop(self, reason: Optional[str] = None, timeout: float = 5.0) -> None:
        """Report Terminated, unregister, close the connection and kill any running command.

        Idempotent; waits at most about ``timeout`` s in total.
        """
        if self._stopped.is_set():
            return
        conn = self._conn
        with self._cond:
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
        self._kill_child()
        with self._cond:
            self._cond.notify_all()
        if self._conn is not None:
            self._conn.close()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(timeout=2.0)

    def _kill_child(self) -> None:
        child = self._child
        if child is not None and child.returncode is None:
            try:
                # The child leads its own session: this also ends what `sh -c` spawned.
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

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
        with self._cond:
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
        running = []
        with self._cond:
            for batch in self._batches.values():
                if batch.running is not None:
                    running.append(_command_state(batch.commands[batch.running]))
        if not running:
            return _err("notFound", f"No running command within activity: {self.activity_id}")
        return {"Ok": running}

    def _on_exec(self, body: Dict[str, Any]) -> Dict[str, Any]:
        batch_id = body.get("batchId") or uuid.uuid4().hex
        script = body.get("exeScript")
        if not isinstance(batch_id, str) or not isinstance(script, list):
            return _err("badRequest", "Exec needs batchId (string) and exeScript (list)")
        for index, command in enumerate(script):
            problem = _validate_command(command)
            if problem:
                return _err("badRequest", f"ExeScript command {index}: {problem}")
        with self._cond:
            if self._state == "Terminated" or self._stopped.is_set():
                return _err("activity", "activity is terminated")
            if batch_id in self._batches:
                return _err("badRequest", f"Batch {batch_id} already exists")
            batch = _Batch(batch_id, script)
            self._batches[batch_id] = batch
        self._spawn(self._run_batch, f"exeunit-batch-{batch_id[:8]}", batch)
        return {"Ok": batch_id}

    def _on_get_results(self, body: Dict[str, Any]) -> Any:
        batch_id = body.get("batchId")
        timeout = body.get("timeout")
        index = body.get("commandIndex")
        wait = float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else 0.0
        if index is not None and (not isinstance(index, int) or index < 0):
            return _err("badRequest", f"bad commandIndex {index!r}")
        with self._cond:
            batch = self._batches.get(batch_id) if isinstance(batch_id, str) else None
            if batch is None:
                return _err("notFound", f"batch_id = {batch_id}")
            if not batch.commands:
                return {"Ok": []}
            want = index if index is not None else len(batch.commands) - 1

            def reached() -> bool:
                assert batch is not None
                return batch.finished or len(batch.results) > want or self._stopped.is_set()

            self._cond.wait_for(reached, timeout=wait)
            if not (batch.finished or len(batch.results) > want) and index is not None:
                return {"Err": "timeout"}  # yagna maps RpcMessageError::Timeout to 408
            results = batch.results if index is None else batch.results[: index + 1]
            return {"Ok": list(results)}

    def _on_stream(self, request: GsbRequest, body: Dict[str, Any]) -> None:
        batch_id = body.get("batch_id", body.get("batchId"))
        with self._cond:
            batch = self._batches.get(batch_id) if isinstance(batch_id, str) else None
            if batch is None:
                request.reply_error(f"Unknown batch: {batch_id}", 400)
                return
            sent = 0 if self.replay_events else len(batch.events)
        conn = self._conn
        while True:
            with self._cond:
                # Wake on every new event; the timeout only bounds a wait nobody notifies.
                self._cond.wait_for(
                    lambda: len(batch.events) > sent or batch.finished or self._stopped.is_set(),
                    timeout=1.0,
                )
                pending = batch.events[sent:]
                done = (batch.finished and sent + len(pending) >= len(batch.events)) or \
                    self._stopped.is_set()
            for event in pending:
                request.reply_partial({"Ok": event})
            sent += len(pending)
            if done or (conn is not None and conn.closed):
                request.end_stream()
                return

    # -- internals: running a batch (batch threads) --------------------------------------------

    def _emit(self, batch: _Batch, index: int, kind: Any) -> None:
        event = {"batch_id": batch.batch_id, "index": index, "timestamp": _naive_utc(), "kind": kind}
        with self._cond:
            batch.events.append(event)
            self._cond.notify_all()

    def _run_batch(self, batch: _Batch) -> None:
        with self._exec_lock:
            for index, command in enumerate(batch.commands):
                if self._stopped.is_set():
                    break
                with self._cond:
                    batch.running = index
                self._emit(batch, index, {"started": {"command": command}})
                stdout: Any = None
                stderr: Any = None
                try:
                    stdout, stderr = self._run_command(batch, index, command)
                    ok, message, code = True, None, 0
                except _CommandFailed as exc:
                    ok, message, code = False, exc.message, exc.return_code
                    stdout, stderr = exc.outputs
                except (ExeUnitError, TransferError, GsbError, OSError, ValueError,
                        requests.RequestException) as exc:
                    ok, message, code = False, str(exc), 1
                except Exception as exc:  # a bug must end the batch, not hang its waiters
                    logger.exception("command %d of batch %s failed", index, batch.batch_id)
                    ok, message, code = False, f"internal error: {exc}", 1
                if self.faults.result_delay and self._stopped.wait(self.faults.result_delay):
                    break
                last = not ok or index == len(batch.commands) - 1
                result = {
                    "index": index,
                    "result": "Ok" if ok else "Error",
                    "stdout": stdout,
                    "stderr": stderr,
                    "message": message,
                    "isBatchFinished": last,
                    "eventDate": _utc_rfc3339(),
                }
                self._emit(batch, index, {"finished": {"return_code": code, "message": message}})
                with self._cond:
                    batch.results.append(result)
                    batch.running = None
                    if last:
                        batch.finished = True
                    self._cond.notify_all()
                if last:
                    break
            with self._cond:
                batch.finished = True
                batch.running = None
                self._cond.notify_all()

    def _run_command(self, batch: _Batch, index: int, command: Dict[str, Any]) -> Tuple[Any, Any]:
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

    # -- run -------------------------------------------------------------------------------

    def _map_arg(self, arg: str) -> str:
        """Rewrite container paths inside one argument (also inside shell snippets)."""
        for cdir in CONTAINER_DIRS:
            if arg == cdir or arg.startswith(cdir + "/"):
                return str(self.container_path(arg))  # a whole path: checked for escapes
        root = str(self.work_dir)
        return _CONTAINER_DIR_RE.sub(lambda m: root + m.group(0), arg)

    def _run_process(self, batch: _Batch, index: int, args: Dict[str, Any]) -> Tuple[Any, Any]:
        entry = args.get("entry_point")
        if not isinstance(entry, str) or not entry:
            raise ExeUnitError("run needs entry_point")
        argv = [self._map_arg(entry)] + [self._map_arg(str(a)) for a in (args.get("args") or [])]
        capture = args.get("capture")
        modes = {"stdout": _CaptureSpec.parse(capture, "stdout"),
                 "stderr": _CaptureSpec.parse(capture, "stderr")}
        cwd = self.container_path("/golem/work")
        env = {k: os.environ[k] for k in _HOST_ENV if k in os.environ}
        env["HOME"] = str(cwd)
        deploy_env = self.deployment.get("env") or {}
        env.update({str(k): str(v) for k, v in deploy_env.items()})
        try:
            child = subprocess.Popen(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        except OSError as exc:
            raise ExeUnitError(f"cannot run {entry}: {exc}") from exc
        self._child = child
        if self._stopped.is_set():
            self._kill_child()
        captured: Dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        try:
            self._pump(batch, index, child, captured)
            # wait4 (not Popen.wait) to get this child's own rusage for golem.usage.cpu_sec. It
            # has no timeout on purpose: an ExeScript command runs as long as it runs; stop() and
            # crash() SIGKILL its process group, which ends this wait.
            _, status, rusage = os.wait4(child.pid, 0)
        finally:
            self._child = None
        child.returncode = os.waitstatus_to_exitcode(status)
        self._cpu_done += rusage.ru_utime + rusage.ru_stime
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
        outputs = (modes["stdout"].result(bytes(captured["stdout"])),
                   modes["stderr"].result(bytes(captured["stderr"])))
        if child.returncode != 0:
            raise _CommandFailed(f"ExeScript command exited with code {child.returncode}",
                                 child.returncode, outputs)
        return outputs

    def _pump(self, batch: _Batch, index: int, child: "subprocess.Popen[bytes]",
              captured: Dict[str, bytearray]) -> None:
        """Read both pipes until EOF, emitting stdout/stderr events as output arrives."""
        selector = selectors.DefaultSelector()
        names: Dict[int, str] = {}
        for name, stream in (("stdout", child.stdout), ("stderr", child.stderr)):
            if stream is not None:
                selector.register(stream, selectors.EVENT_READ)
                names[stream.fileno()] = name
        try:
            while selector.get_map():
                # The timeout lets a stop() be noticed even when a grandchild outside the killed
                # process group still holds the pipes open.
                ready = selector.select(timeout=0.5)
                if not ready and self._stopped.is_set():
                    return
                for key, _ in ready:
                    stream_obj: IO[bytes] = key.fileobj  # type: ignore[assignment]
                    data = os.read(stream_obj.fileno(), 65536)
                    if not data:
                        selector.unregister(stream_obj)
                        continue
                    name = names[stream_obj.fileno()]
                    captured[name] += data
                    self._emit(batch, index, {name: data.decode("utf-8", "replace")})
        finally:
            selector.close()

    def _child_cpu(self) -> float:
        """CPU seconds of the running child so far (Linux /proc; 0 elsewhere)."""
        child = self._child
        if child is None:
            return 0.0
        try:
            with open(f"/proc/{child.pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
            return ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0


def _validate_command(command: Any) -> Optional[str]:
    """Why ``command`` is not a usable ExeScript command, or None."""
    if not isinstance(command, dict) or len(command) != 1:
        return "must be a one-key map {command: args}"
    (name, args), = command.items()
    if name not in _COMMANDS:
        return f"unknown command {name!r}"
    if args is not None and not isinstance(args, dict):
        return f"{name} arguments must be a map"
    args = args or {}
    if name == "run" and not isinstance(args.get("entry_point"), str):
        return "run needs entry_point (string)"
    if name == "run" and not isinstance(args.get("args", []), list):
        return "run args must be a list"
    if name == "transfer" and not (isinstance(args.get("from"), str) and isinstance(args.get("to"), str)):
        return "transfer needs from and to (strings)"
    return None


def _command_state(command: Dict[str, Any]) -> Dict[str, Any]:
    """ExeScriptCommandState of a command (GetRunningCommand)."""
    (name, args), = command.items()
    args = args or {}
    params: Optional[List[str]] = None
    if name == "run":
        params = [str(args.get("entry_point"))] + [str(a) for a in args.get("args") or []]
    elif name == "start":
        params = [str(a) for a in args.get("args") or []]
    elif name == "transfer":
        params = [str(args.get("from")), str(args.get("to"))]
    return {"command": name.capitalize(), "progress": None, "params": params}


@attrs.frozen
class _CaptureSpec:
    """One stream's capture mode (ExeScript ``capture.stdout`` / ``capture.stderr``)."""

    enabled: bool = True
    head: Optional[int] = None
    tail: Optional[int] = None
    binary: bool = False

    @classmethod
    def parse(cls, capture: Any, stream: str) -> "_CaptureSpec":
        if not isinstance(capture, dict):
            return cls()  # no capture spec: keep the whole output
        mode = capture.get(stream)
        if not isinstance(mode, dict) or len(mode) != 1:
            return cls(enabled=False)
        (kind, opts), = mode.items()
        opts = opts if isinstance(opts, dict) else {}
        binary = opts.get("format") in ("bin", "binary")
        if kind == "atEnd":
            if isinstance(opts.get("head"), int):
                return cls(head=opts["head"], binary=binary)
            if isinstance(opts.get("tail"), int):
                return cls(tail=opts["tail"], binary=binary)
            if isinstance(opts.get("headTail"), int):
                half = opts["headTail"] // 2
                return cls(head=half, tail=opts["headTail"] - half, binary=binary)
            return cls(binary=binary)
        if kind == "stream":
            limit = opts.get("limit")
            return cls(tail=limit if isinstance(limit, int) else None, binary=binary)
        return cls(enabled=False)

    def result(self, data: bytes) -> Any:
        """The result's ``stdout``/``stderr`` value (a serde CommandOutput) or None."""
        if not self.enabled:
            return None
        if self.head is not None or self.tail is not None:
            head, tail = self.head or 0, self.tail or 0
            if len(data) > head + tail:
                data = data[:head] + (data[len(data) - tail:] if tail else b"")
        if self.binary:
            return list(data)  # CommandOutput::Bin(Vec<u8>) is a plain serde sequence
        return data.decode("utf-8", "replace")
