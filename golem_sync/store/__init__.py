"""Job stores: jobs that outlive the process that started them, visible to every process sharing one.

Pick one and give it to the network::

    from golem_sync import GolemNetwork
    from golem_sync.store import SQLiteJobStore, Retention

    store = SQLiteJobStore("/var/lib/myapp/jobs.db", retention=Retention(max_age_sec=3600))
    golem = GolemNetwork(job_store=store).init()      # or job_store="/var/lib/myapp/jobs.db"
    job = golem.create_job(); job.start_work(worker)
    # any process opening the same store:
    handle = golem.get_job_by_id(job_id)              # a StoredJob (or the live Job, locally)
    handle.wait_for_result(timeout=30)

- :class:`MemoryJobStore`: one process, for tests.
- :class:`SQLiteJobStore`: the default durable store, for the processes of one machine.
- :class:`PostgresJobStore` (``pip install 'psycopg[binary]'``): for several machines.

``GolemNetwork(job_store="jobs.db")`` or ``job_store="postgresql://..."`` opens one with
:func:`open_store` (and closes it with the network).
"""
from __future__ import annotations

import os
import re
from typing import Any, Union

from .base import (GolemInterruptedError, GolemRemoteJobError, GolemStoreError, JobRecord, JobStore,
                   JsonSerializer, Progress, Retention, Serializer)
from .handle import StoredJob
from .memory import MemoryJobStore
from .sqlite import SQLiteJobStore

__all__ = ["open_store", "is_postgres_spec", "JobStore", "JobRecord", "Retention", "Serializer", "JsonSerializer", "StoredJob", "Progress", "MemoryJobStore",
           "SQLiteJobStore", "PostgresJobStore", "GolemStoreError", "GolemInterruptedError",
           "GolemRemoteJobError"]


# A libpq keyword/value string: ``key=value`` words only, one of them a connection keyword.
_PAIR = r"\w+\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s']\S*)"
_KEYWORDS = re.compile(rf"^\s*{_PAIR}(?:\s+{_PAIR})*\s*$")
_CONNECTION_KEYS = re.compile(r"(^|\s)(host|hostaddr|port|dbname|user|password|service|sslmode)\s*=")


def is_postgres_spec(spec: "Union[str, os.PathLike[str]]") -> bool:
    """Whether :func:`open_store` reads ``spec`` as PostgreSQL (a URL or libpq string), not a SQLite path."""
    text = os.fspath(spec)
    return text.startswith(("postgresql://", "postgres://")) or bool(
        isinstance(spec, str) and _KEYWORDS.match(text) and _CONNECTION_KEYS.search(text))


def open_store(spec: "Union[str, os.PathLike[str]]", **options: Any) -> JobStore:
    """A store from a string: a ``postgresql://`` URL (or a libpq ``host=... dbname=...`` string)
    opens a :class:`PostgresJobStore`, anything else is a SQLite file path. ``options`` go to the
    store (``retention``, ``serializer``, ``table``)."""
    text = os.fspath(spec)
    if is_postgres_spec(spec):
        from .postgres import PostgresJobStore

        return PostgresJobStore(text, **options)
    return SQLiteJobStore(text, **options)


def __getattr__(name: str) -> Any:
    # psycopg is an optional dependency: import the PostgreSQL store only when asked for.
    if name == "PostgresJobStore":
        from .postgres import PostgresJobStore

        return PostgresJobStore
    raise AttributeError(name)
