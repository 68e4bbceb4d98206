"""Issue 13 part 6 (secrets): a PostgreSQL URL's password never shows in a log line, a repr or an
error; the SQLite file (and its -wal/-shm) is created 0600 and the notify directory 0700, whatever the
umask."""
from __future__ import annotations

import logging
import os
import stat
import traceback
import uuid
from typing import Any, Iterator

import pytest

from golem_sync import GolemNetwork
from golem_sync.store import GolemStoreError, SQLiteJobStore, StoredJob, open_store
from golem_sync.store._redact import mask_conninfo, scrub
from golem_sync.store.notify import SocketNotifier, notify_dir_for

SECRET = "s3cretPW-7f1c"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _everything(exc: BaseException, caplog: Any) -> str:
    """All a user could see: the error, its traceback (with its chain) and every log record."""
    text = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for record in caplog.records:
        text.append(record.getMessage())
        if record.exc_info:
            text.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(text)


@pytest.fixture
def all_logs(caplog: Any) -> Iterator[Any]:
    caplog.set_level(logging.DEBUG)  # the root logger: golem_sync's and psycopg's lines alike
    caplog.set_level(logging.DEBUG, logger="golem_sync")
    yield caplog


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- masking -------------------------------------------------------------------------------------

@pytest.mark.parametrize("conninfo, masked", [
    ("postgresql://bob:pw@db.example:5432/jobs", "postgresql://bob:***@db.example:5432/jobs"),
    ("postgres://bob:p%40w@h/db?sslmode=require", "postgres://bob:***@h/db?sslmode=require"),
    ("postgresql://bob@h/db?password=pw&sslmode=require", "postgresql://bob@h/db?password=***&sslmode=require"),
    ("postgresql://bob@h/db", "postgresql://bob@h/db"),
    ("host=h user=bob password=pw dbname=db", "host=h user=bob password=*** dbname=db"),
    ("host=h password = 'p w\\'x' dbname=db", "host=h password = *** dbname=db"),
])
def test_mask_conninfo(conninfo: str, masked: str) -> None:
    assert mask_conninfo(conninfo) == masked


def test_scrub_removes_the_password_in_every_spelling() -> None:
    conninfo = f"postgresql://bob:{SECRET}%21@h/db"
    for text in (conninfo, f'token: "{SECRET}%21"', f"got {SECRET}!", f"in URI: \"{conninfo}\""):
        assert SECRET not in scrub(text, conninfo), text


# -- PostgreSQL errors, reprs and logs -----------------------------------------------------------

@pytest.mark.parametrize("url", [
    "postgresql://bob:{s}@127.0.0.1:{port}/jobs",                 # connection refused
    "postgresql://bob:{s}%ZZ@127.0.0.1:{port}/jobs",              # bad percent-encoding: libpq quotes it
    "postgresql://bob:{s}@[::1:{port}/jobs",                      # bad URI: libpq quotes all of it
    "postgresql://bob:{s}@127.0.0.1:{port}/jobs?bogus=1",         # unknown parameter
    "host=127.0.0.1 port={port} user=bob password={s} junk",       # bad keyword/value string
])
def test_a_failed_open_never_shows_the_password(url: str, all_logs: Any) -> None:
    pytest.importorskip("psycopg")
    from golem_sync.store.postgres import PostgresJobStore

    conninfo = url.format(s=SECRET, port=_free_port())
    with pytest.raises(GolemStoreError) as caught:
        PostgresJobStore(conninfo)
    assert SECRET not in _everything(caught.value, all_logs)
    assert caught.value.__context__ is None or SECRET not in str(caught.value.__context__)
    if "://" in conninfo:
        with pytest.raises(GolemStoreError) as caught:
            open_store(conninfo)
        assert SECRET not in _everything(caught.value, all_logs)


def test_a_network_given_a_url_never_shows_the_password(all_logs: Any) -> None:
    pytest.importorskip("psycopg")
    conninfo = f"postgresql://bob:{SECRET}@127.0.0.1:{_free_port()}/jobs"
    with pytest.raises(GolemStoreError) as caught:
        GolemNetwork(yagna={"app_key": "test-key"}, job_store=conninfo)
    assert SECRET not in _everything(caught.value, all_logs)


@pytest.fixture
def pg_password_role(pg_server: Any) -> Iterator[str]:
    """A role that must give its password (scram) on the session server; the rest stays 'trust'."""
    import psycopg

    role = "pw_" + uuid.uuid4().hex[:8]
    hba = os.path.join(pg_server.data, "pg_hba.conf")
    with open(hba) as f:
        original = f.read()
    with psycopg.connect(pg_server.conninfo, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
        with open(hba, "w") as f:
            f.write(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + original)
        admin.execute("SELECT pg_reload_conf()")
        try:
            yield role
        finally:
            with open(hba, "w") as f:
                f.write(original)
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def _url(pg_server: Any, role: str, password: str, db: str = "postgres") -> str:
    return f"postgresql://{role}:{password}@127.0.0.1:{pg_server.port}/{db}"


def test_wrong_password_and_unknown_database_never_show_the_password(pg_server: Any, pg_password_role: str,
                                                                      all_logs: Any) -> None:
    from golem_sync.store.postgres import PostgresJobStore

    wrong = _url(pg_server, pg_password_role, SECRET + "x")
    with pytest.raises(GolemStoreError) as caught:
        PostgresJobStore(wrong)
    assert "password authentication failed" in str(caught.value)
    assert SECRET not in _everything(caught.value, all_logs)
    with pytest.raises(GolemStoreError) as caught:
        PostgresJobStore(_url(pg_server, pg_password_role, SECRET, db="no_such_db"))
    assert "no_such_db" in str(caught.value)
    assert SECRET not in _everything(caught.value, all_logs)


def test_an_open_store_never_shows_the_password(pg_server: Any, pg_password_role: str, all_logs: Any) -> None:
    import psycopg

    from golem_sync.store.postgres import PostgresJobStore

    conninfo = _url(pg_server, pg_password_role, SECRET)
    with psycopg.connect(pg_server.conninfo, autocommit=True) as admin:
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {pg_password_role}")
    store = PostgresJobStore(conninfo, table="t_" + uuid.uuid4().hex[:8])
    try:
        assert "***" in repr(store) and SECRET not in repr(store) and SECRET not in str(store)
        store.create("j1", state="new")
        # Cut both sessions: the listener logs and reconnects, the main connection reconnects.
        with psycopg.connect(pg_server.conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                          (pg_password_role,))
        assert store.get("j1") is not None
        assert SECRET not in repr(StoredJob(store, "j1"))
    finally:
        store.close()
    text = "\n".join(r.getMessage() for r in all_logs.records)
    assert "connection lost" in text  # the reconnect path did log, with psycopg's text
    assert SECRET not in text


# -- file modes ----------------------------------------------------------------------------------

def test_the_sqlite_file_and_its_wal_and_shm_are_private(tmp_path: Any, open_umask: None) -> None:
    path = str(tmp_path / "jobs.db")
    store = SQLiteJobStore(path)
    try:
        store.create("j1", state="new")
        store.update("j1", state="pending")
        for name in (path, path + "-wal", path + "-shm"):
            assert os.path.exists(name), name
            assert _mode(name) == 0o600, f"{name}: {oct(_mode(name))}"
        assert _mode(notify_dir_for(path)) == 0o700
    finally:
        store.close()


def test_an_existing_looser_sqlite_file_is_left_alone_with_a_warning(tmp_path: Any, open_umask: None,
                                                                     caplog: Any) -> None:
    path = str(tmp_path / "jobs.db")
    SQLiteJobStore(path).close()
    os.chmod(path, 0o644)
    caplog.set_level(logging.DEBUG, logger="golem_sync")
    store = SQLiteJobStore(path)
    store.close()
    assert _mode(path) == 0o644, "a user's file must not be chmod-ed"
    assert any("jobs.db" in r.getMessage() and "0o644" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_a_private_sqlite_file_brings_no_warning(tmp_path: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="golem_sync")
    path = str(tmp_path / "jobs.db")
    SQLiteJobStore(path).close()
    SQLiteJobStore(path).close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_notify_directory_is_private(tmp_path: Any, open_umask: None) -> None:
    directory = str(tmp_path / "n.notify")
    notifier = SocketNotifier(directory, lambda job_id: None)
    try:
        assert _mode(directory) == 0o700
        assert _mode(os.path.join(directory, f"{notifier.token}.lock")) == 0o600
    finally:
        notifier.stop()


def test_a_loose_notify_directory_of_ours_is_tightened(tmp_path: Any, open_umask: None, caplog: Any) -> None:
    directory = str(tmp_path / "n.notify")
    os.mkdir(directory, 0o777)
    caplog.set_level(logging.DEBUG, logger="golem_sync")
    notifier = SocketNotifier(directory, lambda job_id: None)
    try:
        assert _mode(directory) == 0o700
        assert any("n.notify" in r.getMessage() for r in caplog.records)
    finally:
        notifier.stop()


def test_open_store_takes_a_keyword_conninfo_for_postgresql(tmp_path: Any, monkeypatch: Any, all_logs: Any) -> None:
    """Not a SQLite file named after the connection string (password included) in the cwd."""
    pytest.importorskip("psycopg")
    monkeypatch.chdir(tmp_path)
    conninfo = f"host=127.0.0.1 port={_free_port()} user=bob password={SECRET} dbname=jobs"
    with pytest.raises(GolemStoreError) as caught:
        open_store(conninfo)
    assert "PostgreSQL" in str(caught.value)
    assert SECRET not in _everything(caught.value, all_logs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["jobs.db", "host.db", "a=b", "data/jobs=1.db"])
def test_open_store_keeps_file_names_for_sqlite(tmp_path: Any, name: str) -> None:
    os.makedirs(tmp_path / "data", exist_ok=True)
    store = open_store(str(tmp_path / name))
    try:
        assert isinstance(store, SQLiteJobStore)
    finally:
        store.close()
