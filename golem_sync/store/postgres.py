"""A job store on PostgreSQL (psycopg 3), for processes on several machines.

- Notifications: ``pg_notify(channel, job_id)`` after each write (autocommit, so delivered at
  once); each process LISTENs on its own connection in a listener thread.
- Liveness: each process holds a session-level advisory lock on a random key for its whole life
  and records the key in its owner id. PostgreSQL drops the lock when the session ends (process
  killed, machine gone, connection lost), so ``pg_try_advisory_lock(key)`` succeeding means the
  owner is gone. No heartbeats.

Threads: one connection for reads/writes (under a lock, any thread), one for LISTEN owned by the
``golem-store-listen`` daemon thread. Open the store in each process (after ``fork()``).
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
from typing import Any, List, Optional, Sequence

import psycopg

from .base import GolemStoreError, Retention, Serializer
from .sql import SqlJobStore

__all__ = ["PostgresJobStore"]

logger = logging.getLogger("golem_sync.store.postgres")

_SCHEMA_LOCK_KEY = 0x676F6C656D  # "golem": serialises concurrent CREATE TABLE IF NOT EXISTS


class PostgresJobStore(SqlJobStore):
    """Jobs in a PostgreSQL table.

    Args:
        conninfo: a libpq connection string or URL (``postgresql://user@host:port/db``).
        serializer, retention: as for :class:`~golem_sync.store.SQLiteJobStore`.
        table: the table name (default ``golem_jobs``); the notification channel is named after it.
    """

    placeholder = "%s"

    def __init__(self, conninfo: str, *, serializer: Optional[Serializer] = None,
                 retention: Optional[Retention] = None, table: str = "golem_jobs") -> None:
        super().__init__(table=table, serializer=serializer, retention=retention)
        self.channel = f"{self.table}_changed"
        self._key = random.getrandbits(62)
        self._owner = f"pg/{socket.gethostname()}/{os.getpid()}/{self._key}"
        self._stop_payload = f"stop:{self._key}"
        try:
            self._db = psycopg.connect(conninfo, autocommit=True)
            self._db.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in self._schema():
                self._db.execute(statement)
            self._db.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK_KEY,))
            self._db.execute("SELECT pg_advisory_lock(%s)", (self._key,))
            self._listen_db = psycopg.connect(conninfo, autocommit=True)
            self._listen_db.execute(f"LISTEN {self.channel}")
        except psycopg.Error as exc:
            raise GolemStoreError(f"cannot open the PostgreSQL job store: {exc}") from exc
        self._thread = threading.Thread(target=self._listen, name="golem-store-listen", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<PostgresJobStore {self.table}>"

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
        # Our session holds only our own key, so taking another's succeeds only if its session ended.
        rows = self._run("SELECT pg_try_advisory_lock(?)", (key,))
        if rows and rows[0][0]:
            self._run("SELECT pg_advisory_unlock(?)", (key,))
            return False
        return True

    def _run(self, sql: str, params: Sequence[Any] = ()) -> List[Sequence[Any]]:
        self._check_pid()
        try:
            with self._db_lock:
                cursor = self._db.execute(sql.replace("?", "%s"), tuple(params))
                return list(cursor.fetchall()) if cursor.description else []
        except psycopg.Error as exc:
            raise GolemStoreError(f"PostgreSQL job store: {exc}") from exc

    def _rowcount_run(self, sql: str, params: Sequence[Any]) -> int:
        self._check_pid()
        try:
            with self._db_lock:
                return self._db.execute(sql.replace("?", "%s"), tuple(params)).rowcount
        except psycopg.Error as exc:
            raise GolemStoreError(f"PostgreSQL job store: {exc}") from exc

    def _notify(self, job_id: str) -> None:
        self._run("SELECT pg_notify(?, ?)", (self.channel, job_id))

    def _listen(self) -> None:
        while not self._closed:
            try:
                # The timeout only bounds each wait; close() wakes it with a NOTIFY at once.
                for note in self._listen_db.notifies(timeout=30.0):
                    if note.payload.startswith("stop:"):  # another process's close: not a job id
                        if note.payload == self._stop_payload:
                            return
                        continue
                    self._changed(note.payload)
            except psycopg.Error as exc:
                if self._closed:
                    return
                logger.error("PostgreSQL job store: the listener connection failed (%s); "
                             "readers fall back to re-reading every few seconds", exc)
                return

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        if os.getpid() != self._pid:
            return
        try:
            with self._db_lock:
                self._db.execute("SELECT pg_notify(%s, %s)", (self.channel, self._stop_payload))
        except psycopg.Error:
            pass
        self._thread.join(5.0)
        with self._db_lock:
            self._db.close()  # ends the session: our advisory lock goes with it
        self._listen_db.close()
