"""Serve the project with gunicorn for a benchmark, as production would."""

import re
from pathlib import Path

from counterproject.testing.servers import gunicorn

WORKERS = 2  # one per core
SECRET = "bench-only-secret-key"


def serve(
    env: dict,
    log: Path,
    *,
    workers: int = WORKERS,
    threads: int | None = 16,
    args=(),
    ready="/api/counters/global/",
):
    """Start gunicorn with ``env`` over production's settings; return it."""
    server = gunicorn(
        {
            "DEBUG": "0",
            "SECRET_KEY": SECRET,
            "ALLOWED_HOSTS": "127.0.0.1",
            # A load from one address is what the rate limits refuse (#23).
            "COUNTERS_TAKE_RATE": "off",
            "COUNTERS_VISITOR_RATE": "off",
            **env,
        },
        log=log,
        workers=workers,
        threads=threads,
        args=args,
        ready_path=ready,
    )
    server.start()
    return server


def booted_worker(log: Path) -> str:
    """Return the worker class gunicorn's log says it booted."""
    found = re.search(r"Using worker: (\S+)", log.read_text())
    return found.group(1) if found else "unknown"
