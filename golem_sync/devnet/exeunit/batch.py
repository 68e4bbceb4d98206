"""The exe-unit's batch engine: one Exec's commands in order, their results and runtime events.

The engine knows ExeScript's shape (a command is a one-key map ``{name: args}``), the result and
RuntimeEvent records yagna expects, and the batch rules (commands run in order; the first failure
ends the batch; batches run one at a time, like a real exe-unit). What a command *does* is the
``execute`` callback's business (:class:`~golem_sync.devnet.exeunit.ExeUnit` supplies it).

Threads: :meth:`BatchEngine.run` runs on the batch's own thread (``exeunit-batch-<id>``, started by
the caller); the GSB worker threads read results and events (:meth:`wait_results`,
:meth:`events`). All batch state is guarded by the engine's condition; ``stopped`` (shared with the
exe-unit) ends every wait.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import requests

from ..errors import ExeUnitError, GsbError, TransferError
from .process import CommandFailed

__all__ = ["Batch", "BatchEngine", "Execute", "COMMANDS", "validate_command", "command_state"]

logger = logging.getLogger("golem_sync.devnet.exeunit")

#: The ExeScript commands the emulator accepts.
COMMANDS = ("deploy", "start", "run", "transfer", "terminate", "sign")

#: Carries out command ``index`` of a batch; returns its ``(stdout, stderr)`` result values.
Execute = Callable[["Batch", int, Dict[str, Any]], Tuple[Any, Any]]


def _utc_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _naive_utc() -> str:
    # RuntimeEvent.timestamp is a chrono NaiveDateTime: no zone suffix.
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


class Batch:
    """One Exec: its commands, results and runtime events (guarded by the engine's condition)."""

    def __init__(self, batch_id: str, commands: List[Dict[str, Any]]) -> None:
        self.batch_id = batch_id
        self.commands = commands
        self.results: List[Dict[str, Any]] = []
        self.events: List[Dict[str, Any]] = []
        self.finished = False
        self.running: Optional[int] = None


def validate_command(command: Any) -> Optional[str]:
    """Why ``command`` is not a usable ExeScript command, or None."""
    if not isinstance(command, dict) or len(command) != 1:
        return "must be a one-key map {command: args}"
    (name, args), = command.items()
    if name not in COMMANDS:
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


def command_state(command: Dict[str, Any]) -> Dict[str, Any]:
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


class BatchEngine:
    """The batches of one activity; see the module docstring for the threads."""

    def __init__(self, execute: Execute, stopped: threading.Event, *, result_delay: float = 0.0) -> None:
        self._execute = execute
        self._stopped = stopped
        self._result_delay = result_delay
        self._cond = threading.Condition()
        self._batches: Dict[str, Batch] = {}
        self._exec_lock = threading.Lock()

    # -- for the GSB handlers ----------------------------------------------------------------

    def create(self, batch_id: str, commands: List[Dict[str, Any]]) -> Optional[Batch]:
        """A new batch (not started: hand it to :meth:`run` on its own thread); None if the id exists."""
        with self._cond:
            if batch_id in self._batches:
                return None
            batch = Batch(batch_id, commands)
            self._batches[batch_id] = batch
            return batch

    def get(self, batch_id: Any) -> Optional[Batch]:
        with self._cond:
            return self._batches.get(batch_id) if isinstance(batch_id, str) else None

    def wait_results(self, batch: Batch, index: Optional[int], timeout: float) -> Optional[List[Dict[str, Any]]]:
        """The results so far, after waiting up to ``timeout`` s for command ``index`` (default: the
        last) or the batch's end; None if ``index`` was given and not reached in time."""
        with self._cond:
            if not batch.commands:
                return []
            want = index if index is not None else len(batch.commands) - 1

            def reached() -> bool:
                return batch.finished or len(batch.results) > want or self._stopped.is_set()

            self._cond.wait_for(reached, timeout=timeout)
            if not (batch.finished or len(batch.results) > want) and index is not None:
                return None
            results = batch.results if index is None else batch.results[: index + 1]
            return list(results)

    def events(self, batch: Batch, *, replay: bool) -> Iterator[Tuple[List[Dict[str, Any]], bool]]:
        """``(new events, done)`` pairs as events arrive; ``replay`` first yields the past ones.

        Ends after a pair with ``done`` True (the batch finished and all its events were yielded,
        or the exe-unit stopped); the caller may stop earlier.
        """
        with self._cond:
            sent = 0 if replay else len(batch.events)
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
            sent += len(pending)
            yield pending, done
            if done:
                return

    def running_commands(self) -> List[Dict[str, Any]]:
        """The ExeScriptCommandState of every command running now."""
        with self._cond:
            return [command_state(batch.commands[batch.running])
                    for batch in self._batches.values() if batch.running is not None]

    def wake(self) -> None:
        """Wake every waiter (after ``stopped`` was set)."""
        with self._cond:
            self._cond.notify_all()

    # -- for the command executor (batch threads) ----------------------------------------------

    def emit(self, batch: Batch, index: int, kind: Any) -> None:
        """Record a RuntimeEvent of command ``index`` (``{"stdout": ...}``, ``{"started": ...}``...)."""
        event = {"batch_id": batch.batch_id, "index": index, "timestamp": _naive_utc(), "kind": kind}
        with self._cond:
            batch.events.append(event)
            self._cond.notify_all()

    def run(self, batch: Batch) -> None:
        """Run the batch's commands in order (one batch at a time); the first failure ends it."""
        with self._exec_lock:
            for index, command in enumerate(batch.commands):
                if self._stopped.is_set():
                    break
                with self._cond:
                    batch.running = index
                self.emit(batch, index, {"started": {"command": command}})
                stdout: Any = None
                stderr: Any = None
                try:
                    stdout, stderr = self._execute(batch, index, command)
                    ok, message, code = True, None, 0
                except CommandFailed as exc:
                    ok, message, code = False, exc.message, exc.return_code
                    stdout, stderr = exc.outputs
                except (ExeUnitError, TransferError, GsbError, OSError, ValueError,
                        requests.RequestException) as exc:
                    ok, message, code = False, str(exc), 1
                except Exception as exc:  # a bug must end the batch, not hang its waiters
                    logger.exception("command %d of batch %s failed", index, batch.batch_id)
                    ok, message, code = False, f"internal error: {exc}", 1
                if self._result_delay and self._stopped.wait(self._result_delay):
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
                self.emit(batch, index, {"finished": {"return_code": code, "message": message}})
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
