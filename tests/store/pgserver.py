"""A throwaway PostgreSQL server for tests: Debian's binaries, a temp data dir, a free loopback port.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the ``postgres``
system user (the data dir is handed to it). The server is stopped by its pid.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Optional


def find_bin(name: str) -> Optional[str]:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self) -> None:
        initdb, postgres = find_bin("initdb"), find_bin("postgres")
        if not initdb or not postgres:
            raise RuntimeError("PostgreSQL server binaries not found (run .ci/install-servers.sh)")
        # Not under pytest's tmp dir: when running as root, the server runs as ``postgres``, which
        # cannot enter root's private pytest directories.
        base_dir = tempfile.mkdtemp(prefix="golem-sync-pg-")
        self.base = base_dir
        self.data = os.path.join(base_dir, "data")
        self.port = free_port()
        self.user: Optional[str] = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chmod(base_dir, 0o755)
            os.makedirs(self.data, mode=0o700)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
        done = subprocess.run([initdb, "-D", self.data, "-U", "golem", "--auth=trust", "-E", "UTF8", "--no-sync"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, user=self.user, cwd=base_dir)
        if done.returncode != 0:
            shutil.rmtree(base_dir, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')}")
        self.log = open(os.path.join(base_dir, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [postgres, "-D", self.data, "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.data}", "-c", "fsync=off", "-c", "max_connections=60"],
            stdout=self.log, stderr=subprocess.STDOUT, user=self.user, cwd=base_dir)
        self.conninfo = f"postgresql://golem@127.0.0.1:{self.port}/postgres"
        try:
            self._wait_ready(30.0)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, limit: float) -> None:
        import psycopg

        deadline = time.monotonic() + limit
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}; see {self.log.name}")
            try:
                psycopg.connect(self.conninfo, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # startup takes ~1 s and has no readiness signal we can wait on

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, exit
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)
