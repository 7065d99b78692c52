"""
Throwaway servers on 127.0.0.1 and a free port, and the project's commands.

mirakuru starts each server and waits until it answers; port_for picks the
port. PostgreSQL refuses to run as root, so under root (as in CI) the cluster
runs as the unprivileged ``postgres`` user. A server writes to a log file of
its own, which this process closes once the server holds it. A cluster can
also be a streaming standby of another, made with pg_basebackup, be killed
like a crashed machine and be promoted (#15).
"""

import getpass
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import port_for
from mirakuru import HTTPExecutor, TCPExecutor

ROOT = Path(__file__).resolve().parents[2]

# What the processes the suite starts run with: never a production secret.
SECRET_KEY = "insecure-key-for-tests-only"

# The variables the project's settings read: a process the suite starts gets
# only those it is given, whatever the shell running the suite has set.
SETTINGS_ENV = {
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "DATABASE_POOL_TIMEOUT",
    "DATABASE_POOL_MAX_AGE",
    "REDIS_URL",
    "HTTPS",
    "HSTS_SECONDS",
    "HSTS_PRELOAD",
    "COUNTERS_NAIVE_DEMO",
    "COUNTERS_TAKE_RATE",
    "COUNTERS_VISITOR_RATE",
    "COUNTERS_TRUSTED_PROXIES",
    "DATABASE_QUERY_DEADLINE",
    "METRICS_ALLOW",
    "METRICS_TOKEN",
    "LOG_FORMAT",
    "PROMETHEUS_MULTIPROC_DIR",
}


def project_command(
    command: Sequence[str], env: dict[str, str], **options
) -> subprocess.CompletedProcess:
    """
    Run ``command`` in the project directory with the settings ``env``.

    The output is captured as text, standard input is empty and the command
    is bounded in time; ``options`` go to ``subprocess.run``.
    """
    environment = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    options = {"capture_output": True, "text": True, "timeout": 180, **options}
    if "input" not in options:
        options.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(command, cwd=ROOT, env={**environment, **env}, **options)


def manage(*args: str, env: dict[str, str], **options) -> subprocess.CompletedProcess:
    """Run ``manage.py *args`` in a subprocess (see ``project_command``)."""
    return project_command([sys.executable, "manage.py", *args], env, **options)


def migrate(database_url: str, **env: str) -> None:
    """Create the schema of the database at ``database_url`` (manage.py migrate)."""
    env = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": database_url, **env}
    result = manage("migrate", "--no-input", "-v0", env=env)
    if result.returncode:
        raise RuntimeError(f"manage.py migrate failed: {result.stderr.strip()}")


class _LogFile:
    """A mirakuru executor whose output goes to the file ``log``."""

    def __init__(self, *args, log: Path, **kwargs) -> None:
        super().__init__(*args, stderr=subprocess.STDOUT, **kwargs)
        self.log = log

    def start(self):
        # The server inherits the file; this process's copy is closed as
        # soon as the server has started, and opened again on a restart.
        with open(self.log, "ab") as output:
            self._stdout = output
            try:
                return super().start()
            finally:
                self._stdout = None


class LoggedTCPExecutor(_LogFile, TCPExecutor):
    """A server ready when its port accepts connections, logging to a file."""


class LoggedHTTPExecutor(_LogFile, HTTPExecutor):
    """A server ready when its URL answers, logging to a file."""


def postgres_bindir() -> Path:
    """Return the directory of the newest PostgreSQL server binaries."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError("No PostgreSQL server binaries (pg_ctl) were found.")
    return Path(candidates[-1]).parent


def _unprivileged() -> dict:
    """Return Popen arguments that drop root to the ``postgres`` user."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _in_netns(netns: str, command: list[str], popen: dict) -> list[str]:
    """Return ``command`` run in the network namespace ``netns`` as ``popen``'s user."""
    # ip netns exec needs root, so the drop to the user comes after it; both
    # exec, so the server keeps the pid mirakuru started.
    drop = []
    if popen:
        ids = [f"--reuid={popen['user']}", f"--regid={popen['group']}"]
        drop = ["setpriv", *ids, "--clear-groups", "--"]
    return ["ip", "netns", "exec", netns, *drop, *command]


class PostgresCluster:
    """A fresh PostgreSQL cluster with trust authentication on loopback."""

    def __init__(
        self,
        *,
        max_connections: int = 300,
        durable: bool = False,
        settings: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        self.bindir = postgres_bindir()
        self.host = host
        # The network namespace the server runs in (netfaults, #24); the
        # client tools stay in this one and reach it at ``host``.
        self.netns = netns
        self.port = port_for.select_random()
        self.user = "postgres" if os.geteuid() == 0 else getpass.getuser()
        self.dir = Path(tempfile.mkdtemp(prefix="counters-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgresql.log"
        self.max_connections = max_connections
        self.durable = durable
        # Server settings given on the command line, over the defaults below.
        self.settings = settings or {}
        self._popen = _unprivileged()
        if self._popen:
            os.chown(self.dir, self._popen["user"], self._popen["group"])
        self._executor: TCPExecutor | None = None

    def client_args(self) -> list[str]:
        """Return the host, port and user options of PostgreSQL's client tools."""
        return ["-h", self.host, "-p", str(self.port), "-U", self.user]

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` with psql; return its unaligned output."""
        result = subprocess.run(
            [
                str(self.bindir / "psql"), *self.client_args(), "-d", dbname,
                "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql,
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            args, cwd=self.dir, capture_output=True, text=True, **self._popen
        )
        if result.returncode:
            raise RuntimeError(f"{Path(args[0]).name} failed: {result.stderr.strip()}")

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                str(self.bindir / "initdb"),
                f"--pgdata={self.data}",
                f"--username={self.user}",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            )
        settings = {"max_connections": str(self.max_connections)}
        if not self.durable:
            # Tests do not test durability and skip its cost; the benchmark
            # keeps PostgreSQL's defaults, as production does.
            settings |= {
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
            }
        settings |= self.settings
        command = [
            str(self.bindir / "postgres"),
            *("-D", str(self.data), "-h", self.host, "-p", str(self.port)),
            *("-k", str(self.dir)),
            *(arg for item in settings.items() for arg in ("-c", "=".join(item))),
        ]
        popen = self._popen
        if self.netns is not None:
            command, popen = _in_netns(self.netns, command, popen), {}
        self._executor = LoggedTCPExecutor(
            command,
            log=self.log,
            host=self.host,
            port=self.port,
            timeout=60,
            # SIGINT is PostgreSQL's fast shutdown: it ends open sessions.
            stop_signal=signal.SIGINT,
            popen_kwargs=popen,
        )
        self._executor.start()
        self._wait_until_ready()

    def _wait_until_ready(self, seconds: float = 60) -> None:
        """Return once the server lets sessions in (polled, bounded)."""
        # The port opens before recovery ends, and a standby lets sessions in
        # only once it has replayed up to the end of its base backup; until
        # then pg_isready answers at once that the server rejects them.
        deadline = time.monotonic() + seconds
        while True:
            result = subprocess.run(
                [str(self.bindir / "pg_isready"), *self.client_args(), "-t", "5"],
                capture_output=True, text=True, **self._popen,
            )  # fmt: skip
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL did not let sessions in within {seconds:g} s: "
                    f"{result.stdout.strip()} (log: {self.log})"
                )
            time.sleep(0.1)

    def clone(self, primary: "PostgresCluster") -> None:
        """Make this cluster, not yet started, a streaming standby of ``primary``."""
        self._run(
            str(self.bindir / "pg_basebackup"),
            *primary.client_args(),
            f"--pgdata={self.data}",
            "--wal-method=stream",
            "--checkpoint=fast",
            # standby.signal and primary_conninfo: start as its standby.
            "--write-recovery-conf",
        )

    def kill(self) -> None:
        """End the server and every one of its processes at once, as a crash."""
        # mirakuru started the postmaster in a session of its own: SIGKILL
        # reaches its backends and WAL senders too, with no time to send
        # anything more.
        if self._executor is not None:
            self._executor.kill(sig=signal.SIGKILL)

    def promote(self) -> None:
        """Promote this standby to a primary; return once it accepts writes."""
        self._run(
            str(self.bindir / "pg_ctl"), "promote", f"--pgdata={self.data}",
            "--wait", "--timeout=60",
        )  # fmt: skip

    def postmaster_pid(self) -> int:
        """Return the pid of the running cluster's postmaster."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def create_database(self, name: str) -> None:
        """Create the database ``name`` in this cluster."""
        self._run(str(self.bindir / "createdb"), *self.client_args(), name)

    def stop(self) -> None:
        if self._executor is not None and self._executor.running():
            self._executor.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# How a test's gunicorn is stopped once the test is done with it: SIGINT,
# gunicorn's quick shutdown. A graceful one (SIGTERM) waits for every idle
# keep-alive connection a client left open to time out (5 s under gevent),
# seconds spent for nothing a server; a test of graceful shutdown sends its
# own signal.
QUICK_STOP = signal.SIGINT


def gunicorn(
    env: dict[str, str],
    *,
    log: Path,
    workers: int = 4,
    threads: int | None = 8,
    args: Sequence[str] = (),
    ready_path: str = "/api/counters/global/",
) -> LoggedHTTPExecutor:
    """
    Return a mirakuru executor serving the project with gunicorn.

    ``args`` go last on the command line: a worker class (``-k gevent``) or
    an application (``counterproject.asgi:application``). ``stop()`` sends
    SIGINT, gunicorn's quick shutdown (``QUICK_STOP``).
    """
    port = port_for.select_random()
    shape = ["--workers", str(workers)]
    if threads is not None:
        shape += ["--threads", str(threads)]
    executor = LoggedHTTPExecutor(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            *shape,
            *args,
        ],
        url=f"http://127.0.0.1:{port}{ready_path}",
        # Any answer means a worker is serving; the test decides what is right.
        status=r"^\d{3}$",
        method="GET",
        cwd=str(ROOT),
        envvars={**os.environ, **env},
        timeout=60,
        stop_signal=QUICK_STOP,
        log=log,
    )
    executor.base_url = f"http://127.0.0.1:{port}"
    return executor


class RedisServer:
    """A throwaway Redis on loopback that can be stopped and started again."""

    def __init__(self) -> None:
        from pytest_redis.executor import RedisExecutor

        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.dir = Path(tempfile.mkdtemp(prefix="counters-redis-"))
        self.port = port_for.select_random()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._executor = RedisExecutor(
            executable=executable,
            databases=4,
            redis_timeout=30,
            loglevel="notice",
            host="127.0.0.1",
            port=self.port,
            datadir=self.dir,
            # No automatic snapshots: a test takes one with SAVE when it
            # wants Redis to come back holding old data.
            save="",
        )

    def start(self) -> None:
        self._executor.start()

    def stop(self) -> None:
        if self._executor.running():
            self._executor.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)
