"""Fixtures for the job store tests: every store kind, and a real PostgreSQL server on loopback."""
from __future__ import annotations

import os
import sys
import uuid
from typing import Any, Callable, Iterator, List

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from golem_sync.store import JobStore, MemoryJobStore, SQLiteJobStore  # noqa: E402

KINDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: Any) -> Iterator[Any]:
    pytest.importorskip("psycopg")
    from pgserver import PgServer, find_bin

    if not find_bin("initdb"):
        pytest.skip("PostgreSQL server binaries missing: run .ci/install-servers.sh")
    server = PgServer()
    try:
        yield server
    finally:
        server.stop()


class StoreFactory:
    """Opens stores of one kind on one shared location (so two opens = two 'processes' of one store)."""

    def __init__(self, kind: str, location: str, table: str) -> None:
        self.kind, self.location, self.table = kind, location, table
        self.opened: List[JobStore] = []
        self._memory: Any = None

    def __call__(self, **kwargs: Any) -> JobStore:
        store: JobStore
        if self.kind == "memory":
            store = MemoryJobStore(**kwargs)
        elif self.kind == "sqlite":
            store = SQLiteJobStore(self.location, table=self.table, **kwargs)
        else:
            from golem_sync.store import PostgresJobStore

            store = PostgresJobStore(self.location, table=self.table, **kwargs)
        self.opened.append(store)
        return store

    def child_args(self) -> List[str]:
        return [self.kind, self.location, self.table]

    def close(self) -> None:
        for store in self.opened:
            store.close()


def _factory(kind: str, request: Any, tmp_path: Any) -> StoreFactory:
    table = "t_" + uuid.uuid4().hex[:10]
    if kind == "postgres":
        location = request.getfixturevalue("pg_server").conninfo
    else:
        location = str(tmp_path / "jobs.db")
    return StoreFactory(kind, location, table)


@pytest.fixture(params=KINDS)
def make_store(request: Any, tmp_path: Any) -> Iterator[StoreFactory]:
    factory = _factory(request.param, request, tmp_path)
    yield factory
    factory.close()


@pytest.fixture(params=["sqlite", "postgres"])
def shared_store(request: Any, tmp_path: Any) -> Iterator[StoreFactory]:
    """Only the stores several processes can share."""
    factory = _factory(request.param, request, tmp_path)
    yield factory
    factory.close()
