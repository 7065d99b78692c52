"""The benchmark's PostgreSQL database, through psql and pgbench."""

import os
import re
import tempfile
import time

from counterproject.testing.servers import PostgresCluster

from .machine import sh

# pgbench's script for one hot row: the database's own limit.
HOT_ROW = "UPDATE bench_counter SET value = value + 1 WHERE id = 1 RETURNING value;\n"


class Database:
    def __init__(self, pg: PostgresCluster, name: str) -> None:
        self.pg, self.name = pg, name

    def psql(self, sql: str) -> str:
        return sh(
            str(self.pg.bindir / "psql"), *self.pg.client_args(), "-d", self.name,
            "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql,
        ).stdout.strip()  # fmt: skip

    def pgbench(self, script: str, clients: int, seconds: float) -> float:
        """Return pgbench's transactions per second for ``script``."""
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as file:
            file.write(script)
        os.chmod(file.name, 0o644)
        try:
            result = sh(
                str(self.pg.bindir / "pgbench"), *self.pg.client_args(), "-n",
                "-c", str(clients), "-j", "2", "-T", str(max(1, round(seconds))),
                "-f", file.name, self.name,
            )  # fmt: skip
        finally:
            os.unlink(file.name)
        found = re.search(r"tps = ([\d.]+)", result.stdout)
        assert found, result.stdout
        return float(found.group(1))

    def settled(self, counter: str, seconds: float = 10) -> int:
        """
        Return the counter's value once it stops moving: the server may still
        finish takes that were in flight when wrk stopped.
        """
        query = f"SELECT value FROM counters_counter WHERE name = '{counter}'"
        value, deadline = int(self.psql(query)), time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.3)
            value, before = int(self.psql(query)), value
            if value == before:
                break
        return value

    def last_event(self) -> int:
        """Return the id of the newest audit entry (0 if none)."""
        return int(self.psql("SELECT coalesce(max(id), 0) FROM counters_counterevent"))

    def audited(self, counter: str, since: int) -> tuple[int, int]:
        """
        Return how many audit entries of the counter came after entry
        ``since``, and how many transactions wrote them: PostgreSQL stamps
        one transaction's rows with one xmin.
        """
        entries, batches = self.psql(
            "SELECT count(*), count(DISTINCT xmin::text) FROM counters_counterevent "
            f"WHERE id > {since} AND counter_name = '{counter}'"
        ).split("|")
        return int(entries), int(batches)

    def connections(self) -> int:
        """Return how many client connections the app holds to this database."""
        return int(
            self.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                f"'{self.name}' AND backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()"
            )
        )
