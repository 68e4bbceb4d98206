"""The SQL shared by the SQLite and PostgreSQL stores: one table, one row per job.

A finished job is one whose ``ended_at`` is set (it is set exactly when the state becomes final), so
eviction is one indexed range delete.

Threads: subclasses serialise use of their connection with ``self._db_lock``.
"""
from __future__ import annotations

import abc
import threading
from typing import Any, List, Mapping, Optional, Sequence

from .base import FIELDS, JobRecord, JobStore, Retention, Serializer

__all__ = ["SqlJobStore", "ADDED_COLUMNS"]

_COLUMNS = ", ".join(FIELDS)

#: Columns added after the first release, with their SQL type: a store opened on a table created by
#: an older golem_sync adds them (``ALTER TABLE ... ADD COLUMN``; existing rows read NULL).
ADDED_COLUMNS = (("progress", "TEXT"),)


def _check_table_name(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[:1].isalpha():
        from ..errors import GolemConfigError

        raise GolemConfigError(f"table name must be letters, digits and '_', got {name!r}")
    return name


class SqlJobStore(JobStore):
    """A store on a SQL database; subclasses run statements written with ``?`` placeholders."""

    def __init__(self, *, table: str, serializer: Optional[Serializer], retention: Optional[Retention]) -> None:
        super().__init__(serializer=serializer, retention=retention)
        self.table = _check_table_name(table)
        self._db_lock = threading.Lock()

    @abc.abstractmethod
    def _run(self, sql: str, params: Sequence[Any] = ()) -> List[Sequence[Any]]:
        """Execute one statement (autocommit) and return its rows; ``?`` placeholders."""

    @abc.abstractmethod
    def _rowcount_run(self, sql: str, params: Sequence[Any]) -> int:
        """Execute one statement (autocommit) and return how many rows it changed."""

    def _schema(self) -> List[str]:
        t = self.table
        return [
            f"CREATE TABLE IF NOT EXISTS {t} (job_id TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT, "
            f"created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, "
            f"ended_at DOUBLE PRECISION, error TEXT, error_type TEXT, result TEXT, result_error TEXT, "
            f"agreement_id TEXT, activity_id TEXT, allocation_id TEXT, provider TEXT, cancel_reason TEXT, "
            f"progress TEXT)",
        ]

    def _indexes(self) -> List[str]:
        """Run after :meth:`_schema` and the column migrations."""
        t = self.table
        return [
            f"CREATE INDEX IF NOT EXISTS {t}_ended ON {t} (ended_at)",
            f"CREATE INDEX IF NOT EXISTS {t}_state ON {t} (state)",
            f"CREATE INDEX IF NOT EXISTS {t}_created ON {t} (created_at)",
        ]

    def _list(self, states: Sequence[str], limit: Optional[int]) -> List[JobRecord]:
        marks = ", ".join("?" for _ in states)
        sql = f"SELECT {_COLUMNS} FROM {self.table} WHERE state IN ({marks}) ORDER BY created_at DESC"
        params: List[Any] = list(states)
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [JobRecord(*row) for row in self._run(sql, params)]

    def get(self, job_id: str) -> Optional[JobRecord]:
        rows = self._run(f"SELECT {_COLUMNS} FROM {self.table} WHERE job_id = ?", (job_id,))
        return JobRecord(*rows[0]) if rows else None

    def _insert(self, record: JobRecord) -> None:
        marks = ", ".join("?" for _ in FIELDS)
        self._rowcount_run(f"INSERT INTO {self.table} ({_COLUMNS}) VALUES ({marks})",
                           [getattr(record, name) for name in FIELDS])

    def _update(self, job_id: str, fields: Mapping[str, Any], states: Optional[Sequence[str]],
                owner: Optional[str]) -> bool:
        names = list(fields)
        sql = f"UPDATE {self.table} SET " + ", ".join(f"{n} = ?" for n in names) + " WHERE job_id = ?"
        params: List[Any] = [fields[n] for n in names] + [job_id]
        if states is not None:
            sql += " AND state IN (" + ", ".join("?" for _ in states) + ")"
            params += list(states)
        if owner is not None:
            sql += " AND owner = ?"
            params.append(owner)
        return self._rowcount_run(sql, params) > 0

    def _select(self, states: Sequence[str]) -> List[JobRecord]:
        marks = ", ".join("?" for _ in states)
        rows = self._run(f"SELECT {_COLUMNS} FROM {self.table} WHERE state IN ({marks})", list(states))
        return [JobRecord(*row) for row in rows]

    def _delete_finished(self, ended_before: Optional[float], keep: Optional[int]) -> int:
        deleted = 0
        if ended_before is not None:
            deleted += self._rowcount_run(f"DELETE FROM {self.table} WHERE ended_at < ?", (ended_before,))
        if keep is not None:
            # The (keep+1)-th newest end time: everything that ended then or earlier goes.
            rows = self._run(f"SELECT ended_at FROM {self.table} WHERE ended_at IS NOT NULL "
                             f"ORDER BY ended_at DESC LIMIT 1 OFFSET ?", (keep,))
            if rows:
                deleted += self._rowcount_run(f"DELETE FROM {self.table} WHERE ended_at <= ?", (rows[0][0],))
        return deleted

    def count(self) -> int:
        """How many jobs the store holds (running and finished)."""
        return int(self._run(f"SELECT COUNT(*) FROM {self.table}")[0][0])
