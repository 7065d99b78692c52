"""
Production behaviour (#6): settings, health, failures and many hosts, with
the real servers stopped, killed and started again.
"""

import json
import os
import re
import signal
import sys
import threading

import pytest
import requests
from django.test import Client

from counterproject.settings import redis_cache
from counterproject.testing.servers import ROOT, PostgresCluster, migrate
from counterproject.testing.visitors import Visitor, all_at_once

from .support import database_url, manage_on_test_database, started, wait_for
from .test_settings import run, shell_output

README = (ROOT / "README.md").read_text()


def production_environment() -> dict[str, str]:
    """Return the NAME=value lines of the README's production block."""
    block = re.search(r"```sh\n# production environment\n(.*?)```", README, re.S)
    assert block, "README.md has no production environment block"
    pairs = [line.split("=", 1) for line in block.group(1).splitlines() if "=" in line]
    return {name.strip(): value.strip() for name, value in pairs}


# --- Settings -----------------------------------------------------------------


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


# --- Health -------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_without_a_cache_reports_it_absent():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "cache": "absent",
        "ratelimit": "off",  # the suite's default (pyproject.toml)
    }


@pytest.mark.django_db
def test_healthz_checks_the_redis_cache(redis_cache_settings, settings):
    assert Client().get("/healthz").json()["cache"] == "ok"
    # A Redis that does not answer is reported, but the app still serves.
    settings.CACHES = {"default": redis_cache("redis://127.0.0.1:9/0")}
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "database": "ok",
        "cache": "unavailable",
        "ratelimit": "off",
    }


# --- Bad input ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"data": b"x" * (3 * 1024 * 1024), "content_type": "application/json"},
            "Bad request: the request body is too large.",
        ),
        ({"data": b"hello", "content_type": "text/plain"}, "Send the body as JSON"),
        (
            {
                "data": '{"by": 100000000000000000000000}',
                "content_type": "application/json",
            },
            "A take hands out exactly one number: send no step, or a step of 1.",
        ),
    ],
    ids=["oversized", "not-json", "huge-number"],
)
def test_bad_bodies_are_clear_400s_that_change_nothing(global_counter, kwargs, message):
    response = Client().post("/api/counters/global/increment/", **kwargs)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert Client().get("/api/counters/global/").json()["value"] == 0


@pytest.mark.django_db
def test_huge_and_negative_steps_on_the_own_counter(redis_cache_settings):
    client = Client()
    client.get("/api/me/")
    token = client.cookies["csrftoken"].value

    def step(path, by):
        return client.post(
            path, {"by": by}, content_type="application/json", HTTP_X_CSRFTOKEN=token
        )

    response = step("/api/me/increment/", 10**30)
    assert response.status_code == 400
    assert "outside the signed 64-bit range" in response.json()["error"]
    # Decrement means decrement (#12): a negative step is refused, and the
    # message says what to use instead.
    response = step("/api/me/decrement/", -4)
    assert response.status_code == 400
    assert "increment by 4 instead" in response.json()["error"]
    assert client.get("/api/me/").json() == {"value": 0}
    assert step("/api/me/increment/", 4).json() == {"value": 4}
    assert client.get("/api/me/").json() == {"value": 4}


@pytest.mark.django_db
def test_unknown_pages_are_404s_in_html():
    response = Client().get("/no/such/page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- Served by gunicorn -------------------------------------------------------


LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"[\w.]+ "
)


@pytest.mark.django_db(transaction=True)
def test_static_files_are_hashed_and_compressed_under_gunicorn(
    postgres, global_counter, serve, tmp_path
):
    with serve({"DATABASE_URL": database_url()}, workers=1, threads=2) as url:
        page = requests.get(url, timeout=10).text
        css = re.search(r'href="(/static/counters/site\.[0-9a-f]{12}\.css)"', page)
        assert css, page
        login = requests.get(f"{url}/admin/login/", timeout=10).text
        admin_css = re.search(
            r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login
        )
        assert admin_css, login
        for path in (css.group(1), admin_css.group(1)):
            response = requests.get(
                f"{url}{path}", timeout=10, headers={"Accept-Encoding": "gzip"}
            )
            assert response.status_code == 200
            assert response.headers["Content-Encoding"] == "gzip"
            assert "max-age=315360000" in response.headers["Cache-Control"]

    # gunicorn's own lines and its access log share the project's format.
    lines = (tmp_path / "gunicorn.log").read_text().splitlines()
    assert any(" INFO gunicorn.access " in line for line in lines)
    assert any(" INFO gunicorn.error Listening at" in line for line in lines)
    assert [line for line in lines if not LOG_LINE.match(line)] == []


def own_postgres(tmp_path):
    """Start a cluster of the test's own, migrated, that it may stop."""
    cluster = started(PostgresCluster(max_connections=100), "PostgreSQL")
    cluster.create_database("counters")
    migrate(cluster.url("counters"))
    return cluster


def test_database_outage_answers_503s_and_recovers_without_a_restart(tmp_path, serve):
    cluster = own_postgres(tmp_path)
    try:
        with serve(
            {"DATABASE_URL": cluster.url("counters")}, workers=2, threads=4
        ) as url:
            take = f"{url}/api/counters/global/increment/"
            before = [requests.post(take, timeout=10).json()["value"] for _ in range(5)]
            assert before == [1, 2, 3, 4, 5]

            cluster.stop()
            page = requests.get(f"{url}/", timeout=10)
            assert page.status_code == 503
            assert page.headers["Retry-After"] == "5"
            assert "Temporarily unavailable" in page.text
            assert "Traceback" not in page.text
            for response in (
                requests.post(take, timeout=10),
                requests.get(f"{url}/api/counters/global/", timeout=10),
                # A visitor's session is read from the database.
                requests.get(
                    f"{url}/api/me/", timeout=10, cookies={"sessionid": "a" * 32}
                ),
            ):
                assert response.status_code == 503
                assert response.headers["Retry-After"] == "5"
                assert "database is unavailable" in response.json()["error"]
            health = requests.get(f"{url}/healthz", timeout=10)
            assert health.status_code == 503
            assert health.json() == {
                "status": "unavailable",
                "database": "unavailable",
                "cache": "absent",
                "ratelimit": "off",
            }
            for path in ("/me/", "/admin/"):
                response = requests.get(
                    f"{url}{path}", timeout=10, cookies={"sessionid": "a" * 32}
                )
                assert response.status_code == 503

            cluster.start()
            assert wait_for(
                lambda: requests.get(f"{url}/healthz", timeout=10).status_code == 200
            ), "the app did not recover within 20 s"
            after = [requests.post(take, timeout=10).json()["value"] for _ in range(5)]
            assert after == [6, 7, 8, 9, 10]
    finally:
        cluster.destroy()


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_loses_no_number_and_is_replaced(
    postgres, global_counter, serve
):
    with serve({"DATABASE_URL": database_url()}, workers=2, threads=8) as url:
        workers = url.workers()
        assert len(workers) == 2
        take = f"{url}/api/counters/global/increment/"
        numbers, failures = [], []
        stop = threading.Event()

        def client():
            session = requests.Session()
            for _ in range(400):  # bounded in count and, below, in time
                if stop.is_set():
                    return
                try:
                    response = session.post(take, timeout=10)
                except requests.RequestException as exc:
                    failures.append(exc)
                    session = requests.Session()
                    continue
                if response.status_code != 200:
                    failures.append(response.status_code)
                    continue
                numbers.append(response.json()["value"])

        threads = [threading.Thread(target=client) for _ in range(16)]
        for thread in threads:
            thread.start()
        # Killed while takes flow, and once the new worker serves, more
        # numbers than before.
        assert wait_for(lambda: len(numbers) >= 100), "no takes before the kill"
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        before_kill = len(numbers)
        assert wait_for(lambda: len(url.workers() - {victim}) == 2), (
            "gunicorn did not replace the killed worker"
        )
        replaced = len(numbers)
        assert wait_for(lambda: len(numbers) >= replaced + 100), (
            "no takes after the worker was replaced"
        )
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        after_kill = requests.post(take, timeout=10).json()["value"]

    assert before_kill >= 100
    # Only requests on the killed worker's connections failed: at most one
    # for each client, each a connection reset or refused (never a 5xx).
    assert len(failures) <= len(threads), failures
    assert all(isinstance(f, requests.ConnectionError) for f in failures), failures
    numbers.append(after_kill)
    assert len(numbers) == len(set(numbers)), "a number was handed out twice"
    history = manage_on_test_database(
        "counter", "history", "global", "--json", "--limit", "100000", check=True
    )
    recorded = sorted(entry["new_value"] for entry in json.loads(history.stdout))
    final = max(recorded)
    # Every number the counter moved past is in its history, once: a take
    # whose answer died with the worker is there, and none was skipped.
    assert recorded == list(range(1, final + 1))
    assert set(numbers) <= set(recorded)


@pytest.mark.django_db(transaction=True)
def test_two_app_servers_share_one_database_and_one_redis(
    postgres, redis_server, global_counter, serve
):
    env = {"DATABASE_URL": database_url(), "REDIS_URL": redis_server.url}
    with (
        serve(env, workers=2, threads=4) as one,
        serve(env, workers=2, threads=4) as two,
    ):
        calls = [
            (
                lambda base=base: requests.post(
                    f"{base}/api/counters/global/increment/", timeout=30
                )
            )
            for base in [one, two] * 100
        ]
        responses = all_at_once(calls)
        assert {r.status_code for r in responses} == {200}
        numbers = sorted(r.json()["value"] for r in responses)
        assert numbers == list(range(1, 201))

        visitor = Visitor(one)
        for i in range(6):
            visitor.base_url = [one, two][i % 2]
            assert visitor.post("/api/me/increment/").json() == {"value": i + 1}
        for base in (one, two):
            visitor.base_url = base
            assert visitor.value() == 6


@pytest.mark.django_db
def test_a_bad_host_gets_a_400_that_names_no_setting():
    response = Client().get("/api/counters/global/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json() == {"error": "Bad request: it could not be accepted."}
