"""
Run the connection pool under real greenlets or threads; print what it did.

    python tests/pool_concurrency.py gevent|threads share|timeout

tests/test_pool.py runs it in a subprocess on the test database
(``DATABASE_URL``, ``DATABASE_POOL_SIZE``, ``DATABASE_POOL_TIMEOUT``): gevent
must patch the standard library before anything else imports it, which the
pytest process cannot let it do. Prints one line of JSON.

- ``share``: 50 workers each run a query on Django's connection and close
  it; the pool's size bounds how many hold one at once.
- ``timeout``: one worker holds the pool's one connection while another
  asks for a connection.
"""

import sys

MODE, SCENARIO = sys.argv[1:3]
if MODE == "gevent":
    # Before anything else imports threading, socket or select.
    from gevent import monkey

    monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "counterproject.settings")

import django  # noqa: E402

django.setup()

# As gunicorn.conf.py does in each worker: psycopg2 waits through the
# project's wait callback, on gevent's hub under gevent, and never for long.
from counterproject.postgresql.waiting import set_deadline  # noqa: E402

set_deadline(15)

from django.db import connection  # noqa: E402

WORKERS = 50
SECONDS = 30  # every wait is bounded: a hang fails instead of blocking


def run_together(functions) -> list:
    """Run ``functions`` at once, as greenlets or threads; return their results."""
    results = [None] * len(functions)

    def run(index: int) -> None:
        try:
            results[index] = functions[index]()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            results[index] = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
        finally:
            connection.close()  # back to the pool: no request end here

    if MODE == "gevent":
        import gevent

        jobs = [gevent.spawn(run, index) for index in range(len(functions))]
        gevent.joinall(jobs, timeout=SECONDS)
    else:
        jobs = [threading.Thread(target=run, args=[i]) for i in range(len(functions))]
        for job in jobs:
            job.start()
        for job in jobs:
            job.join(SECONDS)
    return results


def share() -> dict:
    """Let ``WORKERS`` workers query through the pool; count what they held."""
    start = threading.Barrier(WORKERS, timeout=SECONDS)
    guard = threading.Lock()
    holding = {"now": 0, "most": 0}

    def query() -> int:
        start.wait()
        with connection.cursor() as cursor:
            with guard:
                holding["now"] += 1
                holding["most"] = max(holding["most"], holding["now"])
            cursor.execute("SELECT pg_backend_pid() FROM pg_sleep(0.01)")
            [pid] = cursor.fetchone()
        with guard:
            holding["now"] -= 1
        return pid

    pids = run_together([query] * WORKERS)
    return {
        "completed": sum(isinstance(pid, int) for pid in pids),
        "errors": sorted({pid for pid in pids if not isinstance(pid, int)}),
        "backends": len({pid for pid in pids if isinstance(pid, int)}),
        "most_held_at_once": holding["most"],
    }


def timeout() -> dict:
    """Ask for a connection while another worker holds the pool's only one."""
    held, asked = threading.Event(), threading.Event()

    def hold() -> str:
        connection.ensure_connection()
        held.set()
        asked.wait(SECONDS)
        return "held"

    def ask() -> str:
        held.wait(SECONDS)
        try:
            connection.ensure_connection()
            return "connected"
        finally:
            asked.set()

    holder, asker = run_together([hold, ask])
    return {"holder": holder, "asker": asker}


print(json.dumps({"share": share, "timeout": timeout}[SCENARIO]()))
