"""``python -m golem_sync jobs``: list, inspect, wait for, cancel and follow jobs in any job store.

::

    python -m golem_sync jobs --store jobs.db list [--state pending] [--limit N] [--json]
    python -m golem_sync jobs --store postgresql://app@db/golem show ID [--json]
    python -m golem_sync jobs --store jobs.db wait ID [--timeout 60] [--json]
    python -m golem_sync jobs --store jobs.db cancel ID [--timeout 60] [--no-wait]
    python -m golem_sync jobs --store jobs.db progress ID [--follow] [--timeout 600] [--json]

``--store`` is a SQLite file or a PostgreSQL URL / libpq string (default: ``$GOLEM_JOB_STORE``);
its password is never printed. ``cancel`` only *asks*: the process running the job sees the
request through the store and cancels the job (ending its agreement and paying what is due), and
the command waits for that end.

Exit status (the same for every command, so a script can branch on it):

====  ==========================================================================================
0     done: the listing/record/progress was printed; ``wait``: the job succeeded;
      ``cancel``: the job ended cancelled (or, with ``--no-wait``, the request was recorded)
1     ``wait``/``progress --follow``: the job was rejected or cancelled, or its process is gone;
      ``cancel``: the job was not running (already ended or never started) or ended otherwise
2     usage: bad arguments
3     no such job in the store (never there, or evicted)
4     timeout: ``--timeout`` ran out before the job ended
5     the store cannot be opened or read (a missing SQLite file, a refused connection)
====  ==========================================================================================
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import Any, Callable, Dict, Optional, TypeVar

from .errors import GolemConfigError, GolemTimeoutError
from .store._redact import mask_conninfo, scrub
from .store.base import ALL_STATES, GolemInterruptedError, GolemStoreError, JobRecord, JobStore, rebuild_error
from .store.handle import StoredJob

__all__ = ["add_parser", "main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_NOT_FOUND", "EXIT_TIMEOUT",
           "EXIT_STORE"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_TIMEOUT = 4
EXIT_STORE = 5

STORE_ENV = "GOLEM_JOB_STORE"
T = TypeVar("T")

CANCEL_REASON = "cancelled from the command line (python -m golem_sync jobs cancel)"


class _Exit(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``jobs`` subcommand to ``python -m golem_sync``'s subparsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "jobs", help="list, show, wait for, cancel and follow the progress of jobs in a job store",
        description="Read any job store (SQLite file or PostgreSQL URL). Exit status: 0 ok, 1 job failed/"
                    "cancelled (wait) or not running (cancel), 2 usage, 3 no such job, 4 timeout, "
                    "5 store error.")
    parser.add_argument("--store", metavar="PATH_OR_URL", default=os.environ.get(STORE_ENV),
                        help=f"a SQLite file or a postgresql:// URL (default: ${STORE_ENV})")
    parser.add_argument("--table", default="golem_jobs", help="the store's table (default: golem_jobs)")
    actions = parser.add_subparsers(dest="action", metavar="action", required=True)

    listing = actions.add_parser("list", help="the jobs, newest first, with state and progress")
    listing.add_argument("--state", action="append", choices=ALL_STATES, metavar="STATE",
                         help=f"only jobs in this state (repeatable; one of {', '.join(ALL_STATES)})")
    listing.add_argument("--limit", type=_non_negative_int, metavar="N", help="at most N jobs")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.set_defaults(run=_list)

    show = actions.add_parser("show", help="one job's record")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="one JSON document")
    show.set_defaults(run=_show)

    wait = actions.add_parser("wait", help="wait until the job ends (exit 0 if it succeeded, 1 if not)")
    wait.add_argument("id")
    wait.add_argument("--timeout", type=_seconds, metavar="S", help="give up after S seconds (exit 4)")
    wait.add_argument("--json", action="store_true", help="print the final record as JSON")
    wait.set_defaults(run=_wait)

    cancel = actions.add_parser("cancel", help="ask the process running the job to cancel it, wait for the end")
    cancel.add_argument("id")
    cancel.add_argument("--timeout", type=_seconds, default=60.0, metavar="S",
                        help="how long to wait for the job to end (default: 60; exit 4 past it)")
    cancel.add_argument("--no-wait", action="store_true", help="record the request and return at once")
    cancel.set_defaults(run=_cancel)

    progress = actions.add_parser("progress", help="the job's latest progress; --follow: each new one until it ends")
    progress.add_argument("id")
    progress.add_argument("--follow", action="store_true", help="print each new progress until the job ends")
    progress.add_argument("--timeout", type=_seconds, metavar="S", help="with --follow: give up after S seconds")
    progress.add_argument("--json", action="store_true", help="JSON (one line per progress with --follow)")
    progress.set_defaults(run=_progress)

    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run ``jobs`` for parsed arguments; return the exit status (see the module's table)."""
    if not args.store:
        print(f"jobs: no store given: pass --store PATH_OR_URL or set ${STORE_ENV}", file=sys.stderr)
        return EXIT_USAGE
    spec: str = args.store
    try:
        store = _open(spec, args.table)
    except _Exit as exc:
        print(f"jobs: {exc}", file=sys.stderr)
        return exc.status
    try:
        status: int = args.run(store, args)
        return status
    except _Exit as exc:
        print(f"jobs: {exc}", file=sys.stderr)
        return exc.status
    except GolemStoreError as exc:
        print(f"jobs: {scrub(str(exc), spec)}", file=sys.stderr)
        return EXIT_STORE
    except KeyboardInterrupt:
        return 130
    finally:
        store.close()


def _open(spec: str, table: str) -> JobStore:
    from .store import is_postgres_spec, open_store

    shown = mask_conninfo(spec)
    if not is_postgres_spec(spec) and not os.path.exists(spec):
        # Opening would create an empty store: a typo must not look like "no jobs".
        raise _Exit(EXIT_STORE, f"no job store at {shown} (the file does not exist)")
    try:
        return open_store(spec, table=table)
    except GolemConfigError as exc:  # a bad table name
        raise _Exit(EXIT_USAGE, str(exc)) from None
    except GolemStoreError as exc:
        raise _Exit(EXIT_STORE, scrub(str(exc), spec)) from None
    except ImportError as exc:
        raise _Exit(EXIT_STORE, f"cannot open {shown}: {exc} (pip install 'psycopg[binary]')") from None


# -- the actions -------------------------------------------------------------------------------

def _list(store: JobStore, args: argparse.Namespace) -> int:
    records = store.list_jobs(args.state, args.limit)
    if args.json:
        _print_json([dict(_as_json(r, with_result=False), owner_alive=_alive(store, r)) for r in records])
        return EXIT_OK
    if not records:
        print("no jobs" + (f" in state {', '.join(args.state)}" if args.state else ""))
        return EXIT_OK
    now = time.time()
    rows = [("ID", "STATE", "AGE", "PROVIDER", "PROGRESS")]
    for r in records:
        progress = r.read_progress()
        rows.append((r.job_id, r.state + _note(store, r),
                     _age(now - r.created_at), r.provider or "-", progress.describe() if progress else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return EXIT_OK


def _show(store: JobStore, args: argparse.Namespace) -> int:
    record = _record(store, args.id)
    if args.json:
        _print_json(_as_json(record, with_result=True))
    else:
        _print_lines(record)
    return EXIT_OK


def _wait(store: JobStore, args: argparse.Namespace) -> int:
    record = _await_end(store, _record(store, args.id), args.timeout, "wait")
    if args.json:
        _print_json(_as_json(record, with_result=True))
    else:
        print(_outcome(record))
    return EXIT_OK if record.state == "done" else EXIT_FAILED


def _cancel(store: JobStore, args: argparse.Namespace) -> int:
    record = _record(store, args.id)
    if not store.request_cancel(record.job_id, CANCEL_REASON):
        raise _Exit(EXIT_FAILED, f"job {args.id} is not running (state: {_state_now(store, args.id)})")
    if args.no_wait:
        print(f"{args.id}: cancel requested")
        return EXIT_OK
    record = _await_end(store, record, args.timeout, "cancel")
    print(_outcome(record))
    return EXIT_OK if record.state == "cancelled" else EXIT_FAILED


def _await_end(store: JobStore, record: JobRecord, timeout: Optional[float], what: str) -> JobRecord:
    """The job's final record; exits 4 past ``timeout``, 1 if its process is gone, 3 if evicted."""
    handle = StoredJob(store, record.job_id)
    try:
        return _until_gone(store, record.job_id, lambda: handle.wait_ended(timeout, cancelling=what == "cancel"))
    except GolemTimeoutError:
        after = " of the cancel request (is the process running it responsive?)" if what == "cancel" else ""
        raise _Exit(EXIT_TIMEOUT, f"job {record.job_id} did not end within {timeout:g}s{after} (state: "
                                  f"{_state_now(store, record.job_id)})") from None
    except GolemInterruptedError as exc:
        raise _Exit(EXIT_FAILED, str(exc)) from None


def _progress(store: JobStore, args: argparse.Namespace) -> int:
    record = _record(store, args.id)
    handle = StoredJob(store, record.job_id)
    if not args.follow:
        progress = record.read_progress()
        if args.json:
            _print_json(progress.as_dict() if progress else None)
        else:
            print(progress.describe() if progress else "no progress reported yet")
        return EXIT_OK
    try:
        _until_gone(store, args.id, lambda: _follow(handle, args))
    except GolemTimeoutError:
        raise _Exit(EXIT_TIMEOUT, f"job {args.id} did not end within {args.timeout:g}s") from None
    except GolemInterruptedError as exc:
        raise _Exit(EXIT_FAILED, str(exc)) from None
    final = handle.record()
    if not args.json:
        print(_outcome(final), flush=True)
    return EXIT_OK if final.state == "done" else EXIT_FAILED


# -- helpers -----------------------------------------------------------------------------------

def _follow(handle: StoredJob, args: argparse.Namespace) -> None:
    for progress in handle.follow_progress(args.timeout):
        if args.json:
            print(json.dumps(progress.as_dict()), flush=True)
        else:
            print(f"{_clock(progress.timestamp)}  {progress.describe()}", flush=True)


def _until_gone(store: JobStore, job_id: str, action: Callable[[], T]) -> T:
    """``action()``; a store error because the job was evicted meanwhile becomes "no such job"."""
    try:
        return action()
    except GolemStoreError:
        if store.get(job_id) is None:
            raise _Exit(EXIT_NOT_FOUND, f"job {job_id!r} was evicted from the store meanwhile") from None
        raise

def _record(store: JobStore, job_id: str) -> JobRecord:
    record = store.get(job_id)
    if record is None:
        raise _Exit(EXIT_NOT_FOUND, f"no job {job_id!r} in the store (never there, or evicted)")
    return record


def _alive(store: JobStore, record: JobRecord) -> Optional[bool]:
    """Whether a running job's process still runs (None for an ended job)."""
    if record.ended:
        return None
    return record.owner is None or store.owner_alive(record.owner)


def _note(store: JobStore, record: JobRecord) -> str:
    if record.ended:
        return ""
    if not _alive(store, record):
        return " (process gone)"
    return " (cancelling)" if record.cancel_reason else ""


def _state_now(store: JobStore, job_id: str) -> str:
    record = store.get(job_id)
    return record.state if record is not None else "evicted"


def _outcome(record: JobRecord) -> str:
    error = rebuild_error(record)
    if record.state == "done" or error is None:
        return f"{record.job_id}: {record.state}"
    return f"{record.job_id}: {record.state}: {record.error_type or type(error).__name__}: {record.error}"


def _as_json(record: JobRecord, *, with_result: bool) -> Dict[str, Any]:
    doc: Dict[str, Any] = {name: value for name, value in record.as_row().items() if name not in ("progress", "result")}
    progress = record.read_progress()
    doc["progress"] = progress.as_dict() if progress else None
    if with_result:
        doc["result"] = _parse(record.result)
    return doc


def _parse(text: Optional[str]) -> Any:
    """A result as stored: JSON (the default serializer) decoded, any other text as it is."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _print_lines(record: JobRecord) -> None:
    doc = _as_json(record, with_result=True)
    progress = record.read_progress()
    for name, value in doc.items():
        if value is None:
            continue
        if name in ("created_at", "updated_at", "ended_at"):
            value = _clock(value)
        elif name == "progress" and progress is not None:
            value = f"{progress.describe()} (reported {_clock(progress.timestamp)})"
        elif not isinstance(value, str):
            value = json.dumps(value)
        print(f"{name}: {value}")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _clock(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be >= 0 and finite, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value

