"""The pool's size, wait and age from the environment, and its fit (#23)."""

import sys

import pytest

from counterproject.database_url import database_from_url
from counterproject.postgresql.capacity import HINT
from counterproject.testing.servers import PostgresCluster, manage, project_command

from .support import started

# Where no server listens: settings are refused before any connection.
UNREACHABLE = "postgres://app@127.0.0.1:1/counters"
WHOLE = "a whole number, 1 or more"
SECONDS = "seconds above 0 and at most 86400 (such as 2.5)"

BAD_POOL_SETTINGS = [
    *[
        pytest.param(
            {"DATABASE_POOL_SIZE": value},
            f"Set DATABASE_POOL_SIZE to {WHOLE}, not {value!r}.",
            id=f"DATABASE_POOL_SIZE={value}",
        )
        for value in ["abc", "0", "-4", "1.5", "1_0", "\u0664"]
    ],
    *[
        pytest.param(
            {name: value},
            f"Set {name} to {SECONDS}, not {value!r}.",
            id=f"{name}={value}",
        )
        for name in ["DATABASE_POOL_TIMEOUT", "DATABASE_POOL_MAX_AGE"]
        for value in ["soon", "0", "0.0", "-1", "nan", "inf", "1e3", "2.", "86401"]
    ],
    *[
        pytest.param(
            {"DATABASE_URL": f"{UNREACHABLE}?{key}={value}"},
            f"Set DATABASE_URL's {key} to {what}, not {value!r}.",
            id=f"?{key}={value}",
        )
        for key, value, what in [
            ("pool_size", "0", WHOLE),
            ("pool_size", "many", WHOLE),
            ("pool_timeout", "0", SECONDS),
            ("pool_timeout", "2,5", SECONDS),
            ("pool_max_age", "never", SECONDS),
        ]
    ],
    pytest.param(
        {"DATABASE_URL": f"{UNREACHABLE}?pool_size=2&pool_size=3"},
        "Set the DATABASE_URL environment variable with each parameter once, "
        "not pool_size twice.",
        id="?pool_size twice",
    ),
    pytest.param(
        {"DATABASE_URL": f"{UNREACHABLE}?pool_size=4", "DATABASE_POOL_SIZE": "8"},
        "Set DATABASE_POOL_SIZE or DATABASE_URL's pool_size, not both to "
        "different values ('8' and '4').",
        id="both, differing",
    ),
]


@pytest.mark.parametrize("env, problem", BAD_POOL_SETTINGS)
def test_every_malformed_pool_setting_stops_manage_py_with_one_line(env, problem):
    result = manage("check", env={"DEBUG": "1", "DATABASE_URL": UNREACHABLE, **env})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"Error: {problem}"]


@pytest.mark.parametrize(
    "env, problem",
    [BAD_POOL_SETTINGS[1], BAD_POOL_SETTINGS[-3], BAD_POOL_SETTINGS[-1]],
)
def test_a_malformed_pool_setting_stops_gunicorn_with_one_line(env, problem):
    result = project_command(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        {"DEBUG": "1", "DATABASE_URL": UNREACHABLE, **env},
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"Error: {problem}"]


def test_a_malformed_pool_setting_is_refused_on_sqlite_too():
    result = manage("check", env={"DEBUG": "1", "DATABASE_POOL_SIZE": "0"})
    assert result.stderr.strip().splitlines() == [
        f"Error: Set DATABASE_POOL_SIZE to {WHOLE}, not '0'."
    ]


def test_the_pool_defaults_fit_a_small_server():
    options = database_from_url(UNREACHABLE)["OPTIONS"]
    assert (options["pool_size"], options["pool_timeout"]) == (16, 10)
    assert options["pool_max_age"] == 1800


def test_pool_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_POOL_SIZE", " 8 ")
    monkeypatch.setenv("DATABASE_POOL_TIMEOUT", "2.5")
    monkeypatch.setenv("DATABASE_POOL_MAX_AGE", "600")
    options = database_from_url(UNREACHABLE)["OPTIONS"]
    assert (options["pool_size"], options["pool_timeout"]) == (8, 2.5)
    assert options["pool_max_age"] == 600


def test_pool_settings_in_the_url_are_numbers_not_text(monkeypatch):
    # The URL's text went to the pool as it was: "2.5" failed only once the
    # pool was full, with a TypeError.
    monkeypatch.setenv("DATABASE_POOL_SIZE", "8")  # the same: allowed
    options = database_from_url(
        f"{UNREACHABLE}?pool_size=8&pool_timeout=2.5&pool_max_age=60"
    )["OPTIONS"]
    assert [options[key] for key in ("pool_size", "pool_timeout", "pool_max_age")] == [
        8,
        2.5,
        60,
    ]
    assert {type(options["pool_timeout"]), type(options["pool_max_age"])} == {float}


# --- The pools' fit on the server --------------------------------------------


@pytest.fixture(scope="module")
def small_server():
    """Start a PostgreSQL that lets 20 sessions in (3 for superusers)."""
    cluster = started(PostgresCluster(max_connections=20), "PostgreSQL")
    yield cluster
    cluster.destroy()


def shortfall(workers: int, size: int) -> str:
    """Return the warning for ``workers`` pools of ``size`` on the small server."""
    return (
        f"{workers} workers with {size} pooled connections each, 3 connections "
        f"PostgreSQL reserves and 5 for operators make {workers * size + 8}, more "
        "than the server's max_connections of 20: requests would fail with 'too "
        "many clients'."
    )


def check_deploy(server: PostgresCluster, *args: str, **env: str):
    return manage(
        "check", "--deploy", *args,
        env={"SECRET_KEY": "x" * 50, "DATABASE_URL": server.url(), **env},
    )  # fmt: skip


def test_check_deploy_warns_when_the_pools_exceed_max_connections(small_server):
    result = check_deploy(small_server, GUNICORN_WORKERS="2")
    assert result.returncode == 0, result.stderr  # a warning, not an error
    assert f"?: (counterproject.W001) {shortfall(2, 16)}\n\tHINT: {HINT}" in (
        result.stderr
    )


def test_check_deploy_is_quiet_when_the_pools_fit(small_server):
    result = check_deploy(
        small_server, "--tag", "pool", GUNICORN_WORKERS="2", DATABASE_POOL_SIZE="6"
    )  # 2 × 6 + 3 + 5 = 20
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."


def test_check_deploy_is_quiet_when_the_server_cannot_be_reached():
    result = manage(
        "check", "--deploy", "--tag", "pool",
        env={"SECRET_KEY": "x" * 50, "DATABASE_URL": UNREACHABLE},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."


def test_gunicorn_warns_at_start_with_the_workers_it_starts(
    small_server, serve, tmp_path
):
    # --workers 3 on the command line: the master counts those, not the cores.
    with serve({"DATABASE_URL": small_server.url()}, workers=3):
        log = (tmp_path / "gunicorn.log").read_text()
    warning = f"{shortfall(3, 16)} {HINT} (counterproject.W001)"
    assert f"WARNING gunicorn.error {warning}" in log
