"""A job store on PostgreSQL (psycopg 3), for processes on several machines.

- Notifications: ``pg_notify(channel, job_id)`` after each write (autocommit, so delivered at
  once); each process LISTENs on a connection of its own, in a listener thread.
- Liveness: the listener's session holds an advisory lock on a random key, recorded in this
  process's owner id, for the process's whole life. PostgreSQL drops the lock when the session ends
  (process killed, machine gone), so ``pg_try_advisory_lock(key)`` succeeding means the owner is
  gone. No heartbeats.
- Lost connections: the listener reconnects at once (backing off to 5 s while the server is away),
  takes its lock again, and re-reads every job this process waits on or runs, since notifications
  sent meanwhile are lost. The main connection reconnects on the next call that finds it broken.
  A process whose listener stays away past a recovery by another process has its jobs recovered:
  that is the price of telling dead processes from live ones without heartbeats.

Threads: one connection for reads/writes (under a lock, any thread); one for LISTEN, owned by the
``golem-store-listen`` daemon thread. Open the store in each process (after ``fork()``).
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
from typing import Any, Callable, List, Optional, Sequence, TypeVar

import psycopg

from ._redact import mask_conninfo, scrub
from .base import GolemStoreError, Retention, Serializer
from .sql import ADDED_COLUMNS, SqlJobStore

__all__ = ["PostgresJobStore"]

logger = logging.getLogger("golem_sync.store.postgres")

T = TypeVar("T")

_SCHEMA_LOCK_KEY = 0x676F6C656D  # "golem": serialises concurrent CREATE TABLE IF NOT EXISTS


class PostgresJobStore(SqlJobStore):
    """Jobs in a PostgreSQL table.

    Args:
        conninfo: a libpq connection string or URL (``postgresql://user@host:port/db``). Its password
            never shows in a repr, log line or error: they read ``postgresql://user:***@host/db``.
        serializer, retention: as for :class:`~golem_sync.store.SQLiteJobStore`.
        table: the table name (default ``golem_jobs``); the notification channel is named after it.
    """

    def __init__(self, conninfo: str, *, serializer: Optional[Serializer] = None,
                 retention: Optional[Retention] = None, table: str = "golem_jobs") -> None:
        super().__init__(table=table, serializer=serializer, retention=retention)
        self.channel = f"{self.table}_changed"
        self._key = random.getrandbits(62)
        self._owner = f"pg/{socket.gethostname()}/{os.getpid()}/{self._key}"
        self._stop_payload = f"stop:{self._key}"
        self._conninfo = conninfo
        self.url = mask_conninfo(conninfo)  # what to show of it
        self._stopping = threading.Event()
        self._listen_db: Optional[psycopg.Connection[Any]] = None
        db: Optional[psycopg.Connection[Any]] = None
        locked = False
        failure: Optional[GolemStoreError] = None
        try:
            db = psycopg.connect(conninfo, autocommit=True)
            db.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK_KEY,))
            locked = True
            for statement in self._schema():
                db.execute(statement)
            # A table of an older golem_sync: add what it lacks. Looked up first, since ALTER TABLE
            # locks the table even when there is nothing to add.
            present = {row[0] for row in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "AND table_schema = ANY(current_schemas(false))", (self.table.lower(),)).fetchall()}
            for name, kind in ADDED_COLUMNS:
                if name not in present:
                    db.execute(f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS {name} {kind}")
                    logger.info("PostgreSQL job store: added column %s to table %s", name, self.table)
            for statement in self._indexes():
                db.execute(statement)
            db.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK_KEY,))
            locked = False
            self._listen_db = self._connect_listener()
        except BaseException as exc:
            # Leave nothing behind: other processes would block on the schema lock until this
            # session ended (when the garbage collector closed the connection).
            _close_quietly(db, unlock=_SCHEMA_LOCK_KEY if locked else None)
            if not isinstance(exc, psycopg.Error):
                raise
            failure = self._error(f"cannot open the PostgreSQL job store {self.url}", exc)
        if failure is not None:
            raise failure  # out of the except block: no implicit context quoting the password
        assert db is not None
        self._db = db
        self._thread = threading.Thread(target=self._listen, name="golem-store-listen", daemon=True)
        self._thread.start()

    def _connect_listener(self) -> "psycopg.Connection[Any]":
        conn = psycopg.connect(self._conninfo, autocommit=True)
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (self._key,))
            conn.execute(f"LISTEN {self.channel}")
        except BaseException:
            _close_quietly(conn)  # its session, and the liveness lock with it, end now
            raise
        return conn

    def __repr__(self) -> str:
        return f"<PostgresJobStore {self.table} at {self.url}>"

    def _scrub(self, exc: BaseException) -> str:
        return scrub(str(exc).strip(), self._conninfo)

    def _error(self, context: str, exc: "psycopg.Error") -> GolemStoreError:
        """A store error for ``exc`` without the password; chained to ``exc`` only if its text is clean
        (a traceback prints the chain, and libpq quotes a connection string it cannot parse). Raise it
        outside any ``except`` block, or Python links the original to it as its ``__context__``."""
        text = self._scrub(exc)
        error = GolemStoreError(f"{context}: {text}")
        error.__suppress_context__ = True
        if text == str(exc).strip():
            error.__cause__ = exc
        return error

    @property
    def owner(self) -> str:
        self._check_pid()
        return self._owner

    def owner_alive(self, owner: str) -> bool:
        if owner == self._owner:
            return not self._closed
        if not owner.startswith("pg/"):
            return False
        try:
            key = int(owner.rpartition("/")[2])
        except ValueError:
            return False
        # The main session holds no liveness key, so taking another's succeeds only if its session ended.
        rows = self._run("SELECT pg_try_advisory_lock(?)", (key,))
        if rows and rows[0][0]:
            self._run("SELECT pg_advisory_unlock(?)", (key,))
            return False
        return True

    def _run(self, sql: str, params: Sequence[Any] = ()) -> List[Sequence[Any]]:
        def run() -> List[Sequence[Any]]:
            cursor = self._db.execute(sql.replace("?", "%s"), tuple(params))
            return list(cursor.fetchall()) if cursor.description else []

        return self._with_connection(run)

    def _rowcount_run(self, sql: str, params: Sequence[Any]) -> int:
        return self._with_connection(lambda: self._db.execute(sql.replace("?", "%s"), tuple(params)).rowcount)

    def _with_connection(self, action: "Callable[[], T]") -> "T":
        """Run ``action`` on the main connection, reconnecting once if the connection was lost."""
        self._check_pid()
        failure: Optional[psycopg.Error] = None
        with self._db_lock:
            for attempt in (1, 2):
                try:
                    if self._db.closed or self._db.broken:
                        self._db = psycopg.connect(self._conninfo, autocommit=True)
                    return action()
                except psycopg.OperationalError as exc:
                    if attempt == 2 or not (self._db.closed or self._db.broken) or self._closed:
                        failure = exc
                        break
                    logger.warning("PostgreSQL job store: connection lost (%s); reconnecting", self._scrub(exc))
                except psycopg.Error as exc:
                    failure = exc
                    break
        assert failure is not None
        raise self._error("PostgreSQL job store", failure)  # out of the except block: see _error

    def _notify(self, job_id: str) -> None:
        self._run("SELECT pg_notify(?, ?)", (self.channel, job_id))

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            conn = self._listen_db
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self._listen_db = self._connect_listener()
                    logger.info("PostgreSQL job store: listener reconnected")
                    self._resync()
                backoff = 0.1
                # The timeout only bounds each wait; close() wakes it with a NOTIFY at once.
                for note in conn.notifies(timeout=30.0):
                    if note.payload.startswith("stop:"):  # a process closing its store: not a job id
                        if note.payload == self._stop_payload:
                            return
                        continue
                    self._changed(note.payload)
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    return
                logger.warning("PostgreSQL job store: listener connection failed (%s); retrying in %.1fs",
                               self._scrub(exc), backoff)
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg.Error:
                        pass
                self._listen_db = None
                self._stopping.wait(backoff)
                backoff = min(5.0, backoff * 2)

    def _resync(self) -> None:
        """After a gap in notifications: treat every job waited on or run here as changed."""
        with self._cond:
            ids = set(self._watched)
        try:
            ids.update(r.job_id for r in self.running() if r.owner == self._owner)
        except GolemStoreError as exc:
            logger.warning("PostgreSQL job store: resync failed: %s", exc)
        for job_id in ids:
            self._changed(job_id)

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        self._stopping.set()
        if os.getpid() != self._pid:
            return
        try:
            with self._db_lock:
                self._db.execute("SELECT pg_notify(%s, %s)", (self.channel, self._stop_payload))
        except psycopg.Error:
            pass
        self._thread.join(5.0)
        with self._db_lock:
            self._db.close()
        if self._listen_db is not None:
            self._listen_db.close()  # ends the listener's session: our advisory lock goes with it


def _close_quietly(conn: "Optional[psycopg.Connection[Any]]", unlock: Optional[int] = None) -> None:
    """Release ``unlock`` (an advisory lock key) if given, then close ``conn``; errors are ignored."""
    if conn is None:
        return
    if unlock is not None and not (conn.closed or conn.broken):
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (unlock,))
        except psycopg.Error:
            pass  # closing the session below releases it anyway
    try:
        conn.close()
    except psycopg.Error:
        pass
