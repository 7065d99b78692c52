"""Configuration from the environment, as an operator meets it."""

import re
import socket
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from counterproject.database_url import database_from_url
from counterproject.settings import BASE_DIR
from counterproject.testing.servers import manage, project_command


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """Run ``args`` with only the settings ``env``, as an operator's shell does."""
    return project_command(args, env, timeout=60)


def shell_output(code: str, **env: str) -> str:
    """Run ``code`` in ``manage.py shell`` (DEBUG=1 unless given); return stdout."""
    env = {"DEBUG": "1", **env}
    result = manage("shell", "--no-imports", "-c", code, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "manage.py", "check"],
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
    ],
    ids=["manage.py", "gunicorn"],
)
def test_production_without_secret_key_fails_with_one_line(command):
    result = run(command, DEBUG="0")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: Set the SECRET_KEY environment variable "
        "(or DEBUG=1 for local development)."
    ]


def test_debug_runs_without_a_secret_key():
    result = run([sys.executable, "manage.py", "check"], DEBUG="1")
    assert result.returncode == 0, result.stderr


def test_bad_database_url_fails_with_one_line():
    result = run(
        [sys.executable, "manage.py", "check"], DEBUG="1", DATABASE_URL="mysql://x/y"
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: Set the DATABASE_URL environment variable to "
        "postgres://user:password@host:port/name or sqlite:///path."
    ]


def test_bad_debug_flag_is_named():
    result = run([sys.executable, "manage.py", "check"], DEBUG="maybe")
    assert result.returncode != 0
    assert "Set DEBUG to 1 or 0, not 'maybe'." in result.stderr
    assert "Traceback" not in result.stderr


def test_embedded_default_is_sqlite_beside_manage_py():
    code = (
        "from django.conf import settings; d = settings.DATABASES['default'];"
        "print(d['ENGINE'], d['NAME'], d['OPTIONS']['transaction_mode'])"
    )
    assert shell_output(code).split() == [
        "django.db.backends.sqlite3",
        str(BASE_DIR / "db.sqlite3"),
        "IMMEDIATE",
    ]


def test_embedded_default_keeps_no_shared_state_in_a_process():
    code = (
        "from django.conf import settings;"
        "print(settings.CACHES['default']['BACKEND'], settings.SESSION_ENGINE)"
    )
    assert shell_output(code).split() == [
        "django.core.cache.backends.dummy.DummyCache",
        "counters.sessions",
    ]


def test_redis_url_caches_in_redis_under_the_project_prefix():
    code = (
        "from django.conf import settings; c = settings.CACHES['default'];"
        "print(c['BACKEND'], c['LOCATION'], c['KEY_PREFIX'])"
    )
    assert shell_output(code, REDIS_URL="redis://127.0.0.1:6390/2").split() == [
        "django_redis.cache.RedisCache",
        "redis://127.0.0.1:6390/2",
        "counters",
    ]


def test_bad_redis_url_names_the_variable():
    result = run(
        [sys.executable, "manage.py", "check"], DEBUG="1", REDIS_URL="localhost:6379"
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: Set the REDIS_URL environment variable to redis://host:port/db."
    ]


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_url_takes_connections_from_a_bounded_pool(scheme):
    config = database_from_url(f"{scheme}://app:secret@db.example:6543/counters")
    assert config["ENGINE"] == "counterproject.postgresql"
    assert (config["USER"], config["PASSWORD"]) == ("app", "secret")
    assert (config["HOST"], config["PORT"], config["NAME"]) == (
        "db.example",
        6543,
        "counters",
    )
    # Not kept by a thread, but returned to the process's pool (#11).
    assert config["CONN_MAX_AGE"] == 0
    assert config["OPTIONS"]["pool_size"] == 16


def test_postgres_url_names_several_servers_as_libpq_does():
    config = database_from_url(
        "postgres://app:pw@10.0.0.1:5432,10.0.0.2:5433,[::1]/counters"
        "?target_session_attrs=read-write&connect_timeout=2"
    )
    assert config["ENGINE"] == "counterproject.postgresql"
    assert (config["USER"], config["PASSWORD"], config["NAME"]) == (
        "app",
        "pw",
        "counters",
    )
    # libpq's own lists: one port per host, an empty one being the default.
    assert config["HOST"] == "10.0.0.1,10.0.0.2,::1"
    assert config["PORT"] == "5432,5433,"
    assert config["OPTIONS"]["target_session_attrs"] == "read-write"
    # The URL's parameters win over the project's defaults.
    assert config["OPTIONS"]["connect_timeout"] == 2
    assert config["OPTIONS"]["pool_size"] == 16
    assert "lock_timeout" in config["OPTIONS"]["options"]


def test_several_hosts_without_ports_use_libpqs_default_port():
    config = database_from_url("postgresql://app@db1.internal,db2.internal/counters")
    assert (config["HOST"], config["PORT"]) == ("db1.internal,db2.internal", "")


@pytest.mark.parametrize(
    "url, problem",
    [
        (
            "postgres://app@h1:5432,h2:fast/counters",
            "with host:port pairs separated by commas, each port from 1 to "
            "65535; 'h2:fast' is not one.",
        ),
        (
            "postgres://app@h1:5432,h2:70000/counters",
            "with host:port pairs separated by commas, each port from 1 to "
            "65535; 'h2:70000' is not one.",
        ),
        (
            "postgres://app@h1:5432,,h2:5432/counters",
            "with host:port pairs separated by commas, each port from 1 to "
            "65535; '' is not one.",
        ),
        (
            "postgres://app@h1,h2/counters?target_session_attr=read-write",
            "with parameters libpq knows (invalid connection option "
            '"target_session_attr").',
        ),
        (
            "postgres://app@h1,h2/counters?target_session_attrs=writable",
            "with target_session_attrs one of any, prefer-standby, primary, "
            "read-only, read-write, standby, not 'writable'.",
        ),
        (
            "postgres://app@h1,h2/counters?connect_timeout=soon",
            "with connect_timeout in whole seconds, not 'soon'.",
        ),
        (
            "postgres://app@h1/counters?connect_timeout=1&connect_timeout=2",
            "with each parameter once, not connect_timeout twice.",
        ),
        (
            "mysql://app@h1:3306,h2:3306/counters",
            "to postgres://user:password@host:port/name or sqlite:///path.",
        ),
    ],
)
def test_a_malformed_database_url_is_refused_with_one_line(url, problem):
    result = run([sys.executable, "manage.py", "check"], DEBUG="1", DATABASE_URL=url)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: Set the DATABASE_URL environment variable {problem}"
    ]


def test_sqlite_urls_are_absolute_with_four_slashes_and_relative_with_three():
    absolute = database_from_url("sqlite:////var/lib/counters/db.sqlite3")
    relative = database_from_url("sqlite:///data/db.sqlite3")
    assert absolute["NAME"] == "/var/lib/counters/db.sqlite3"
    assert relative["NAME"] == str(BASE_DIR / "data" / "db.sqlite3")
    for config in (absolute, relative):
        assert config["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
        assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]
        assert config["OPTIONS"]["timeout"] >= 5


@pytest.mark.parametrize("url", ["mysql://db/x", "not a url", "redis://localhost"])
def test_unsupported_database_url_names_the_variable(url):
    with pytest.raises(ImproperlyConfigured, match="Set the DATABASE_URL"):
        database_from_url(url)


def test_bad_gunicorn_setting_fails_with_one_line():
    result = run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        DEBUG="1",
        GUNICORN_THREADS="many",
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: Set GUNICORN_THREADS to a whole number, not 'many'."
    ]


def test_postgres_connections_time_out_instead_of_hanging():
    options = database_from_url("postgres://app@db.example/counters")["OPTIONS"]
    assert options["connect_timeout"] <= 10
    assert options["keepalives"] == 1
    assert "lock_timeout" in options["options"]


# Each serving number and its smallest value: keep-alive 0 turns it off.
SERVING_NUMBERS = {
    "GUNICORN_WORKERS": 1,
    "GUNICORN_THREADS": 1,
    "GUNICORN_TIMEOUT": 1,
    "GUNICORN_GRACEFUL_TIMEOUT": 1,
    "GUNICORN_KEEPALIVE": 0,
}
BAD_SERVING_NUMBERS = [
    pytest.param(name, value, problem.format(minimum=minimum), id=f"{name}={value}")
    for name, minimum in SERVING_NUMBERS.items()
    for value, problem in [
        ("abc", "a whole number, not 'abc'"),
        ("-3", "{minimum} or more, not '-3'"),
        ("1_0", "a whole number, not '1_0'"),
        ("\u0664", "a whole number, not '\u0664'"),
        *([("0", "1 or more, not '0'")] if minimum else []),
    ]
]


@pytest.mark.parametrize("name, value, problem", BAD_SERVING_NUMBERS)
def test_every_bad_serving_number_stops_with_one_line(name, value, problem):
    result = run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        DEBUG="1",
        **{name: value},
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"Error: Set {name} to {problem}."]


@pytest.mark.parametrize("value", ["abc", "127.0.0.1", ":8000", "host:0", "h:x"])
def test_a_bad_bind_address_stops_with_one_line(value):
    result = run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        DEBUG="1",
        GUNICORN_BIND=value,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: Set GUNICORN_BIND to HOST:PORT (such as 127.0.0.1:8000) or "
        f"unix:PATH, not {value!r}."
    ]


def test_an_asgi_server_on_a_port_in_use_stops_with_one_line():
    # Each ASGI worker binds a socket of its own (gunicorn.conf.py): the
    # master checks the port first, or the workers would fail to bind and be
    # replaced forever.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run(
            [
                sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                "-k", "asgi", "counterproject.asgi:application",
            ],
            DEBUG="1",
            GUNICORN_BIND=f"127.0.0.1:{port}",
        )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: Cannot listen on 127.0.0.1:{port}: Address already in use."
    ]


@pytest.mark.parametrize(
    "value, problem", [("-1", "0 or more"), ("x", "a whole number")]
)
def test_a_bad_hsts_max_age_is_named(value, problem):
    result = run(
        [sys.executable, "manage.py", "check"], DEBUG="1", HTTPS="1", HSTS_SECONDS=value
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: Set HSTS_SECONDS to {problem}, not {value!r}."
    ]


# --- Production: the README's environment, HTTPS, hosts (#6) -----------------


README = (BASE_DIR / "README.md").read_text()


def production_environment() -> dict[str, str]:
    """Return the NAME=value lines of the README's production block."""
    block = re.search(r"```sh\n# production environment\n(.*?)```", README, re.S)
    assert block, "README.md has no production environment block"
    pairs = [line.split("=", 1) for line in block.group(1).splitlines() if "=" in line]
    return {name.strip(): value.strip() for name, value in pairs}


def test_check_deploy_reports_nothing_with_the_readme_environment():
    env = production_environment()
    assert {"SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "HTTPS"} <= (
        set(env)
    )
    result = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        **env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The one silenced check is W021, "preload HSTS": an opt-in since #12.
    assert "System check identified no issues (1 silenced)." in result.stdout
    preloaded = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        **env,
        HSTS_PRELOAD="1",
    )
    assert "System check identified no issues (0 silenced)." in preloaded.stdout


def https_settings(**env: str) -> list[str]:
    code = (
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT,"
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS,"
        "s.SECURE_PROXY_SSL_HEADER)"
    )
    return shell_output(code, **env).strip().split(maxsplit=4)


def test_hsts_preload_is_an_explicit_opt_in():
    code = (
        "from django.conf import settings as s;"
        "print(s.SECURE_HSTS_PRELOAD, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)"
    )
    assert shell_output(code, HTTPS="1").split() == ["False", "True"]
    assert shell_output(code, HTTPS="1", HSTS_PRELOAD="1").split() == ["True", "True"]


def test_https_settings_are_off_by_default_and_on_behind_a_tls_proxy():
    assert https_settings() == ["False", "False", "False", "0", "None"]
    assert https_settings(HTTPS="1") == [
        "True",
        "True",
        "True",
        "31536000",
        "('HTTP_X_FORWARDED_PROTO', 'https')",
    ]


@pytest.mark.django_db
def test_a_bad_host_gets_a_400_that_names_no_setting():
    response = Client().get("/api/counters/global/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json() == {"error": "Bad request: it could not be accepted."}
