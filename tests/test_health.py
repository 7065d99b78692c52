"""
/healthz, and what the served app answers while its database is down (#6):
clean 503s with Retry-After, never a traceback, and a recovery without a
restart that loses no number.
"""

import pytest
import requests
from django.test import Client

from counterproject.settings import redis_cache
from counterproject.testing.servers import PostgresCluster, migrate

from .support import started, wait_for


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
