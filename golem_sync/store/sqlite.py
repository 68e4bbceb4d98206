"""The default durable store: one SQLite file (stdlib ``sqlite3``, WAL mode), shared by the processes
of one machine (gunicorn/uWSGI workers, restarts, a CLI next to a web app).

WAL lets readers go on while one process writes; ``busy_timeout`` makes a writer wait for another's
short transaction instead of failing. ``synchronous=NORMAL`` (safe in WAL: a power cut can lose the
last commits, never corrupt the file) keeps a state change well under a millisecond.
Notifications and liveness go through :mod:`golem_sync.store.notify` (unix sockets and ``flock``).

Threads: one connection, used under a lock from any thread; the notifier's listener thread delivers
notifications. Open the store in each process (after ``fork()``), never share one across a fork.
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import stat
from typing import Any, List, Optional, Sequence, Union

from .base import GolemStoreError, Retention, Serializer
from .notify import SocketNotifier, notify_dir_for
from .sql import ADDED_COLUMNS, SqlJobStore

__all__ = ["SQLiteJobStore"]

logger = logging.getLogger("golem_sync.store.sqlite")


class SQLiteJobStore(SqlJobStore):
    """Jobs in the SQLite database at ``path`` (created if missing, readable by this user only: 0600,
    and so its ``-wal``/``-shm`` files; an existing file keeps its mode, with a warning if others can
    read it).

    Args:
        path: the database file; every process sharing jobs opens the same path.
        serializer: how results become text (default JSON).
        retention: when finished jobs are evicted (default: after a day, or beyond 10,000).
        table: the table name (default ``golem_jobs``).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, serializer: Optional[Serializer] = None,
                 retention: Optional[Retention] = None, table: str = "golem_jobs") -> None:
        super().__init__(table=table, serializer=serializer, retention=retention)
        self.path = os.fspath(path)
        _create_private(self.path)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            for statement in self._schema():
                self._db.execute(statement)
            self._add_columns()
            for statement in self._indexes():
                self._db.execute(statement)
        except sqlite3.Error as exc:
            raise GolemStoreError(f"cannot open the SQLite job store {self.path}: {exc}") from exc
        self._notifier = SocketNotifier(notify_dir_for(self.path), self._changed)
        self._owner = f"{socket.gethostname()}/{os.getpid()}/{self._notifier.token}"

    def __repr__(self) -> str:
        return f"<SQLiteJobStore {self.path}>"

    def _add_columns(self) -> None:
        """Migrate a table of an older golem_sync: add the columns it lacks (SQLite has no
        ``ADD COLUMN IF NOT EXISTS``; another process adding one at the same time is fine)."""
        present = {row[1] for row in self._db.execute(f"PRAGMA table_info({self.table})").fetchall()}
        for name, kind in ADDED_COLUMNS:
            if name in present:
                continue
            try:
                self._db.execute(f"ALTER TABLE {self.table} ADD COLUMN {name} {kind}")
                logger.info("job store %s: added column %s to table %s", self.path, name, self.table)
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise

    @property
    def owner(self) -> str:
        self._check_pid()
        return self._owner

    def owner_alive(self, owner: str) -> bool:
        host, _, rest = owner.partition("/")
        if host != socket.gethostname():
            return True  # another machine's process: we cannot tell, so never steal its jobs
        return self._notifier.alive(rest.rpartition("/")[2])

    def _run(self, sql: str, params: Sequence[Any] = ()) -> List[Sequence[Any]]:
        self._check_pid()
        try:
            with self._db_lock:
                return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise GolemStoreError(f"job store {self.path}: {exc}") from exc

    def _rowcount_run(self, sql: str, params: Sequence[Any]) -> int:
        self._check_pid()
        try:
            with self._db_lock:
                return self._db.execute(sql, tuple(params)).rowcount
        except sqlite3.Error as exc:
            raise GolemStoreError(f"job store {self.path}: {exc}") from exc

    def _notify(self, job_id: str) -> None:
        self._notifier.send(job_id)

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        if os.getpid() == self._pid:
            self._notifier.stop()
            with self._db_lock:
                self._db.close()


def _create_private(path: str) -> None:
    """Create the database file empty with mode 0600 (whatever the umask) before SQLite opens it;
    SQLite gives the ``-wal`` and ``-shm`` files the database file's mode. An existing file is left
    as it is (it may be the user's own choice) but a warning names it if other users can read it."""
    if path in ("", ":memory:"):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            return
        if mode & 0o077:
            logger.warning("job store %s has mode %s: other users can read job results; "
                           "`chmod 600` it (and its -wal/-shm files) to keep them private", path, oct(mode))
        return
    except OSError:
        return  # a missing directory, no permission: sqlite3 reports it with the path
    os.close(fd)
