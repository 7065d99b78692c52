"""
The app in someone else's project (#27; docs/reuse.md).

The wheel is built from a copy of this checkout and installed with pip into
a fresh virtualenv (its dependencies, already installed here, are lent to it
through a .pth file, so nothing is downloaded). ``django-admin
startproject`` makes a project; only the blocks of docs/reuse.md are added
to it, and a view of its own that takes numbers. It is migrated on SQLite
and on PostgreSQL, served by gunicorn, and 200 concurrent clients take
numbers through that view. Then some of the app's own tests run against the
installed copy.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import port_for
import pytest
import requests

from counterproject.testing.servers import QUICK_STOP, ROOT, LoggedHTTPExecutor
from loadtest.load import realtime_violations

CLIENTS = 200
# The app's own test modules run again against the installed copy.
OWN_TESTS = [
    "public_api", "services", "take", "checks", "views", "admin", "commands",
    "sessions", "api",
]  # fmt: skip
TAKES_EACH = 3
DOC = (ROOT / "docs" / "reuse.md").read_text()
# What the checkout holds that a wheel must not: built files, servers' data.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache",
    ".hypothesis", "staticfiles", "test-artifacts", "db.sqlite3*",
)  # fmt: skip

PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
WHERE_IS_THE_APP = "import counters; print(counters.__file__)"

HOST_VIEW = """
import counters
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt  # called by scripts, as an API is
@require_POST
def next_invoice(request):
    actor = counters.Actor(counters.Source.API, "host:" + request.META["REMOTE_ADDR"])
    return JsonResponse({"invoice": counters.take("invoice", actor=actor)})
"""


def documented(first_line: str) -> str:
    """Return the code block of docs/reuse.md that starts with ``first_line``."""
    pattern = rf"```python\n({re.escape(first_line)}\n.*?)```"
    block = re.search(pattern, DOC, re.S)
    assert block, f"docs/reuse.md has no block starting {first_line!r}"
    return block.group(1)


def host_environment(**env: str) -> dict[str, str]:
    """Return this environment with the host's settings, not this project's."""
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "host.settings", **env}


def run(*args, cwd: Path, env: dict | None = None, timeout: float = 300) -> str:
    """Run a command to completion; fail the test with its output if it fails."""
    result = subprocess.run(
        args,
        cwd=cwd,
        env=env or host_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def host_python(tmp_path_factory) -> Path:
    """Return the Python of a fresh virtualenv with the app's wheel installed."""
    work = tmp_path_factory.mktemp("reusable")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        "dist",
        ".",
        cwd=source,
    )
    [wheel] = (source / "dist").glob("counterproject-*.whl")
    venv = work / "venv"
    run(sys.executable, "-m", "venv", str(venv), cwd=work)
    python = venv / "bin" / "python"
    site = Path(run(str(python), "-c", PURELIB, cwd=work).strip())
    # The dependencies (Django, gunicorn, psycopg2…) from this virtualenv: a
    # plain path line, so that its own .pth files (this checkout's editable
    # install among them) are not read.
    (site / "lent-dependencies.pth").write_text(sysconfig.get_paths()["purelib"])
    run(str(python), "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=work)
    where = run(str(python), "-c", WHERE_IS_THE_APP, cwd=work)
    assert Path(where.strip()).is_relative_to(site), where
    return python


def start_project(
    python: Path, where: Path, database: str, redis_url: str | None
) -> Path:
    """Make a project with startproject, add the documented blocks; return it."""
    run(
        str(python),
        "-m",
        "django",
        "startproject",
        "host",
        str(where),
        cwd=where.parent,
    )
    settings = where / "host" / "settings.py"
    added = [documented("# settings.py: add the app")]
    if database == "sqlite":
        added.append(documented("# settings.py: SQLite"))
    else:
        added.append(f"DATABASES = {{'default': {database}}}\n")
    if redis_url is None:
        added.append(documented("# settings.py: no cache"))
    else:
        redis = documented("# settings.py: sessions cached in Redis")
        added.append(redis.replace("redis://127.0.0.1:6379/0", redis_url))
    settings.write_text(settings.read_text() + "\n" + "\n".join(added))
    (where / "host" / "views.py").write_text(HOST_VIEW)
    urls = where / "host" / "urls.py"
    urls.write_text(
        urls.read_text()
        + "\n"
        + documented("# urls.py: route the app")
        + "\nfrom host.views import next_invoice\n\n"
        + 'urlpatterns.insert(0, path("invoices/next/", next_invoice))\n'
    )
    return where


def manage(python: Path, project: Path, *args: str, **env: str) -> str:
    return run(
        str(python), "manage.py", *args, cwd=project, env=host_environment(**env)
    )


def serve(python: Path, project: Path, log: Path) -> LoggedHTTPExecutor:
    port = port_for.select_random()
    server = LoggedHTTPExecutor(
        [
            str(python), "-m", "gunicorn", "host.wsgi",
            "--bind", f"127.0.0.1:{port}",
            "--workers", "2", "--threads", "8", "--worker-class", "gthread",
        ],
        url=f"http://127.0.0.1:{port}/",
        status=r"^\d{3}$",
        method="GET",
        cwd=str(project),
        envvars=host_environment(),
        timeout=60,
        stop_signal=QUICK_STOP,
        log=log,
    )  # fmt: skip
    server.base_url = f"http://127.0.0.1:{port}"
    return server


def take_concurrently(url: str) -> list[tuple[float, float, int]]:
    """Take numbers from CLIENTS threads at once; return (sent, answered, number)."""
    start = threading.Barrier(CLIENTS, timeout=60)
    timed, failures = [], []

    def client():
        session = requests.Session()
        start.wait()
        for _ in range(TAKES_EACH):
            sent = time.monotonic()
            try:
                response = session.post(url, timeout=60)
            except requests.RequestException as exc:
                failures.append(repr(exc))
                continue
            if response.status_code != 200:
                failures.append(response.status_code)
                continue
            timed.append((sent, time.monotonic(), response.json()["invoice"]))
        session.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    return timed


def admin_lists(base_url: str, name: str) -> bool:
    """Log in to the host's admin as ada; return whether it lists ``name``."""
    with requests.Session() as browser:
        login = f"{base_url}/admin/login/"
        form = browser.get(login, timeout=30).text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert token, form
        browser.post(
            login,
            data={
                "username": "ada",
                "password": "a-long-test-password",
                "csrfmiddlewaretoken": token.group(1),
                "next": "/admin/counters/counter/",
            },
            headers={"Referer": login},
            timeout=30,
        )
        listing = browser.get(f"{base_url}/admin/counters/counter/", timeout=30)
        assert listing.status_code == 200, listing.text[:500]
        return f">{name}</a>" in listing.text


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_fresh_project_with_the_wheel_hands_out_each_number_once(
    database, host_python, tmp_path, request
):
    if database == "postgresql":
        cluster = request.getfixturevalue("postgres")
        cluster.create_database("host")
        settings = repr(
            {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "host",
                "USER": cluster.user,
                "HOST": cluster.host,
                "PORT": cluster.port,
            }
        )
        redis_url = request.getfixturevalue("redis_server").url
    else:
        settings, redis_url = "sqlite", None
    project = start_project(host_python, tmp_path / "host", settings, redis_url)
    manage(host_python, project, "check", "--fail-level", "WARNING")
    manage(host_python, project, "migrate", "--no-input")
    manage(
        host_python, project, "shell", "-c",
        "import counters; counters.create('invoice', audit_takes=True)",
    )  # fmt: skip
    manage(
        host_python, project, "createsuperuser", "--no-input",
        "--username", "ada", "--email", "ada@example.com",
        DJANGO_SUPERUSER_PASSWORD="a-long-test-password",
    )  # fmt: skip

    server = serve(host_python, project, tmp_path / "gunicorn.log")
    try:
        server.start()
        timed = take_concurrently(f"{server.base_url}/invoices/next/")
        assert admin_lists(server.base_url, "invoice")
        # The app's own page, from the wheel's templates.
        page = requests.get(f"{server.base_url}/", timeout=30)
        assert page.status_code == 200 and "Take a number" in page.text
    finally:
        server.stop()

    numbers = sorted(number for _, _, number in timed)
    assert numbers == list(range(1, CLIENTS * TAKES_EACH + 1))
    assert realtime_violations(timed) == 0
    shown = manage(host_python, project, "counter", "show", "invoice")
    assert f"value: {CLIENTS * TAKES_EACH}" in shown.splitlines()
    history = manage(
        host_python, project, "counter", "history", "invoice", "--json",
        "--limit", "10000",
    )  # fmt: skip
    audited = sorted(entry["new_value"] for entry in json.loads(history))
    assert audited == numbers


def test_the_apps_own_tests_pass_against_the_installed_copy(host_python, tmp_path):
    # This checkout without the app's own directory: its tests import the
    # counters that the wheel installed.
    def without_the_app(directory: str, names: list[str]) -> set[str]:
        ignored = set(NOT_SOURCE(directory, names))
        return ignored | ({"counters"} if Path(directory) == ROOT else set())

    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, ignore=without_the_app)
    where = run(str(host_python), "-c", WHERE_IS_THE_APP, cwd=checkout)
    assert Path(where.strip()).is_relative_to(host_python.parent.parent), where
    # The in-process tests of the app's subjects, on SQLite (the suite's
    # second session); django-admin's own script is not in the virtualenv,
    # whose dependencies are lent.
    output = run(
        str(host_python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "--database=sqlite", "-k", "not django-admin",
        *(f"tests/test_{subject}.py" for subject in OWN_TESTS),
        cwd=checkout, env=dict(os.environ), timeout=600,
    )  # fmt: skip
    assert re.search(r"^\d+ passed", output.splitlines()[-1]), output[-2000:]
    assert "failed" not in output.splitlines()[-1]
