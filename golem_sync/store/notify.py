"""Cross-process notifications and liveness for stores on one machine (the SQLite store).

SQLite has no notification channel, so each process sharing a store keeps, in one directory:

- ``<token>.sock``: a unix *datagram* socket its listener thread reads. A writer sends the changed
  job id to every socket in the directory after committing (a few microseconds per process; sends
  are non-blocking, and a socket nobody listens on any more is removed).
- ``<token>.lock``: a file it holds an exclusive ``flock`` on for its whole life. The kernel drops
  the lock when the process dies however it dies (even ``kill -9``), so "can I take this lock?"
  tells, without heartbeats or pids that may be reused, whether the owner is gone.

Threads: :class:`SocketNotifier` owns one daemon listener thread (``golem-store-notify``) that calls
the ``deliver`` callback for each datagram; ``send`` and ``alive`` are safe from any thread.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import socket
import stat
import tempfile
import threading
import uuid
from typing import Callable, Optional

__all__ = ["SocketNotifier", "notify_dir_for"]

logger = logging.getLogger("golem_sync.store.notify")

_MAX_SUN_PATH = 100  # sockaddr_un.sun_path is 104-108 bytes depending on the OS; keep a margin
_STOP = b"\0stop"


def notify_dir_for(db_path: str) -> str:
    """The directory every process computes for the same database file.

    Next to the database when the socket paths fit in ``sun_path``; otherwise a directory in the
    system temp dir named after a hash of the database's real path.
    """
    real = os.path.realpath(db_path)
    beside = real + ".notify"
    if len(beside) + 1 + 12 + len(".sock") <= _MAX_SUN_PATH:
        return beside
    digest = hashlib.sha1(real.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"golem_sync-{digest}")


def _make_private_dir(directory: str) -> None:
    """Create ``directory`` with mode 0700 (umask only narrows it), or tighten an existing one of
    ours to 0700 (only golem_sync uses it); one owned by another user is left, with a warning."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        logger.warning("job store notification directory %s is %s: other users may read or send "
                       "job notifications there", directory,
                       "a symbolic link" if stat.S_ISLNK(info.st_mode) else f"owned by uid {info.st_uid}")
    elif mode & 0o077:
        os.chmod(directory, 0o700)
        logger.info("job store notification directory %s had mode %s; now 0o700", directory, oct(mode))


class SocketNotifier:
    """This process's socket and liveness lock in a store's notification directory."""

    def __init__(self, directory: str, deliver: Callable[[str], None]) -> None:
        self.directory = directory
        self.token = uuid.uuid4().hex[:12]
        self._deliver = deliver
        _make_private_dir(directory)
        # The lock comes first: a socket (or a job record naming us) never exists without it.
        self._lock_path = os.path.join(directory, f"{self.token}.lock")
        self._lock_fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._path = os.path.join(directory, f"{self.token}.sock")
        self._inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._inbox.bind(self._path)
        self._inbox.settimeout(30.0)  # only bounds each recv; stop() wakes it with a datagram
        self._outbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._outbox.setblocking(False)
        self._send_lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="golem-store-notify", daemon=True)
        self._thread.start()

    # -- sending ----------------------------------------------------------------------------

    def send(self, job_id: str) -> None:
        """Send ``job_id`` to every listener in the directory (this process's included)."""
        data = job_id.encode()
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        with self._send_lock:
            for name in names:
                if not name.endswith(".sock"):
                    continue
                path = os.path.join(self.directory, name)
                try:
                    self._outbox.sendto(data, path)
                except (ConnectionRefusedError, FileNotFoundError):
                    self._remove_stale(name[:-len(".sock")])
                except BlockingIOError:
                    # That listener's queue is full; it re-reads within RECHECK_SEC anyway.
                    logger.debug("notification to %s dropped: queue full", name)
                except OSError as exc:
                    logger.warning("notification to %s failed: %s", name, exc)

    def _remove_stale(self, token: str) -> None:
        """Remove the socket of a process that is gone (its lock is free)."""
        if not self.alive(token):
            for suffix in (".sock", ".lock"):
                try:
                    os.unlink(os.path.join(self.directory, token + suffix))
                except FileNotFoundError:
                    pass

    # -- liveness ---------------------------------------------------------------------------

    def alive(self, token: str) -> bool:
        """Whether the process that created ``token`` still holds its lock."""
        if token == self.token:
            return not self._stopped.is_set()
        if not token or "/" in token or token.startswith("."):
            return False
        path = os.path.join(self.directory, f"{token}.lock")
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return True
            raise
        finally:
            os.close(fd)  # closing our descriptor releases the lock we may have taken
        return False

    # -- the listener thread ----------------------------------------------------------------

    def _listen(self) -> None:
        while not self._stopped.is_set():
            try:
                data = self._inbox.recv(512)
            except socket.timeout:
                continue
            except OSError:
                if self._stopped.is_set():
                    return
                raise
            if data == _STOP:
                return
            try:
                self._deliver(data.decode("utf-8", "replace"))
            except Exception:
                logger.exception("delivering a job store notification failed")

    def stop(self) -> None:
        """Stop listening, remove this process's socket and lock. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        try:
            self._outbox.sendto(_STOP, self._path)
        except OSError:
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)
        for path in (self._path, self._lock_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._inbox.close()
        self._outbox.close()
        os.close(self._lock_fd)

    @property
    def thread(self) -> Optional[threading.Thread]:
        return self._thread
