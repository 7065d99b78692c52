"""
The README's answer to "will the naive global counter go wrong?", measured.

    python bench/naive.py            # prints a Markdown table

For each gunicorn shape it serves the embedded default (SQLite) with
COUNTERS_NAIVE_DEMO=1 and runs ``manage.py loadtest`` against the naive
module-level counter and against the database-backed one.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import SECRET, migrate, served  # noqa: E402

SHAPES = [(1, 1), (1, 8), (4, 1), (4, 8)]
CLIENTS = 50
REQUESTS = 4000


def loadtest(url: str) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "loadtest",
            "--json",
            "--url",
            url,
            "--clients",
            str(CLIENTS),
            "--requests",
            str(REQUESTS),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"},
    )
    return json.loads(result.stdout)


def main() -> None:
    rows = []
    for workers, threads in SHAPES:
        work = Path(tempfile.mkdtemp(prefix="counters-naive-"))
        env = {
            "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}",
            "COUNTERS_NAIVE_DEMO": "1",
        }
        migrate(env)
        server = served(
            env, (workers, threads), "/api/counters/global/", work / "gunicorn.log"
        )
        try:
            for label, path in [
                ("naive global object", "/api/naive/increment/"),
                ("database counter", "/api/counters/global/increment/"),
            ]:
                report = loadtest(f"{server.base_url}{path}")
                rows.append((f"{workers} × {threads}", label, report))
        finally:
            server.stop()
    print(
        "| workers × threads | endpoint | requests | duplicates | gaps | "
        "consecutive | req/s |"
    )
    print("| --- | --- | ---: | ---: | ---: | --- | ---: |")
    for shape, label, r in rows:
        print(
            f"| {shape} | {label} | {r['requests']} | {r['duplicates']} | "
            f"{r['gaps']} | {'yes' if r['consecutive'] else 'no'} | {r['rps']:.0f} |"
        )


if __name__ == "__main__":
    main()
