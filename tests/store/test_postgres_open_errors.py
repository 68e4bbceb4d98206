"""A PostgresJobStore whose constructor fails releases the schema lock and closes its connections
(audit S6): other processes opening the store must not block behind the failed one."""
from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

from golem_sync.store.base import GolemStoreError  # noqa: E402
from golem_sync.store.postgres import _SCHEMA_LOCK_KEY, PostgresJobStore  # noqa: E402


#: The store's sessions in these tests carry this name, so other tests' sessions on the shared
#: server (a store closing in the background) are not counted as the constructor's.
_APP = "golem-sync-open-errors-test"


def _bounded(conninfo: str) -> str:
    """The same server, but a lock wait fails after 5 s (a leaked schema lock must fail, not hang)."""
    return conninfo + ("&" if "?" in conninfo else "?") + f"options=-c%20lock_timeout%3D5000&application_name={_APP}"


def _backends(conninfo: str, admin: Any) -> int:
    """Client sessions of the store under test (opened through :func:`_bounded`)."""
    row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                        "AND pid <> pg_backend_pid() AND application_name = %s", (_APP,)).fetchone()
    return int(row[0])


def _settled(conninfo: str, admin: Any, expected: int) -> int:
    """The session count once closed sessions' backends have exited (they leave pg_stat_activity a
    moment after the client closed); a session still open keeps the count up for the whole 2 s."""
    deadline = time.monotonic() + 2.0
    while True:
        count = _backends(conninfo, admin)
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def _schema_lock_free(admin: Any) -> bool:
    taken = admin.execute("SELECT pg_try_advisory_lock(%s)", (_SCHEMA_LOCK_KEY,)).fetchone()[0]
    if taken:
        admin.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK_KEY,))
    return bool(taken)


def test_a_failing_schema_statement_releases_the_lock_and_the_connection(pg_server):
    table = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.conninfo, autocommit=True) as admin:
        # A table of that name without the store's columns: CREATE INDEX ... (ended_at) fails.
        admin.execute(f"CREATE TABLE {table} (job_id TEXT PRIMARY KEY)")
        before = _backends(pg_server.conninfo, admin)
        with pytest.raises(GolemStoreError) as caught:
            PostgresJobStore(_bounded(pg_server.conninfo), table=table)
        assert "ended_at" in str(caught.value)
        assert _schema_lock_free(admin), "the failed constructor still holds the schema lock"
        assert _settled(pg_server.conninfo, admin, before) == before, "the failed constructor left a session open"
        admin.execute(f"DROP TABLE {table}")


def test_a_failing_listener_closes_the_main_connection(pg_server, monkeypatch):
    def broken_listener(self: PostgresJobStore) -> Any:
        raise psycopg.OperationalError("listener refused")

    monkeypatch.setattr(PostgresJobStore, "_connect_listener", broken_listener)
    with psycopg.connect(pg_server.conninfo, autocommit=True) as admin:
        before = _backends(pg_server.conninfo, admin)
        with pytest.raises(GolemStoreError) as caught:
            PostgresJobStore(_bounded(pg_server.conninfo), table=f"t_{uuid.uuid4().hex[:8]}")
        assert "listener refused" in str(caught.value)
        assert _settled(pg_server.conninfo, admin, before) == before, "the main connection was left open"
        assert _schema_lock_free(admin)
