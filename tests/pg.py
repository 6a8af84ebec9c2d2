"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl in a temporary directory, on a
free loopback port, trust authentication for loopback only, removed at the end.

The binaries come from PATH or Debian's /usr/lib/postgresql/*/bin (`.ci/run` installs the
``postgresql`` package when they are absent).  PostgreSQL refuses to run as root: as root the
cluster runs as the ``postgres`` user (made by the Debian package) or ``nobody``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def binaries() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise PostgresUnavailable(
        "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): "
        "install the Debian package 'postgresql' (.ci/run does it)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """``with Cluster() as pg: pg.create_database("x") -> URL``."""

    def __init__(self, *, durable: bool = False):
        """``durable``: fsync on (benchmarks); the tests run without it."""
        self.durable = durable
        self.bin = binaries()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ebts-pg-"))
        self.data = self.root / "data"
        self.user = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            if self.user is None:
                raise PostgresUnavailable("running as root and no 'postgres' user to run as")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        kwargs: dict = {}
        if self.user is not None:
            uid, gid = self.user.pw_uid, self.user.pw_gid

            def demote():
                os.setgid(gid)
                os.setuid(uid)

            kwargs["preexec_fn"] = demote
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, **kwargs)
        if check and proc.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
            )
        return proc

    def start(self) -> Cluster:
        self._run(
            self.bin / "initdb",
            "-D",
            self.data,
            "-U",
            "gateway",
            "--auth=trust",
            "-E",
            "UTF8",
            *([] if self.durable else ["--no-sync"]),
        )
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
        options += "-c max_connections=100"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        self._run(
            self.bin / "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.root / "log",
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://gateway@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
        for _ in range(50):
            if not (self.data / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
