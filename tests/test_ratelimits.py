"""Rate limits for anonymous clients: takes and own-counter changes (#23)."""

import http.client
import json
import sys

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory

from counterproject.settings import redis_cache
from counterproject.testing.servers import project_command
from counters.models import GLOBAL, Counter, CounterEvent
from counters.ratelimits import client_key

from .support import database_url, stored_value

pytestmark = pytest.mark.django_db

TAKE = "/api/counters/global/increment/"


@pytest.fixture
def limits(settings):
    """Allow 3 takes and 2 own-counter changes a minute per client."""
    settings.COUNTERS_TAKE_RATE = "3/minute"
    settings.COUNTERS_VISITOR_RATE = "2/minute"
    return settings


def test_the_api_refuses_a_take_over_the_limit_with_429_and_takes_nothing(
    limits, global_counter
):
    client = Client()
    numbers = [client.post(TAKE).json()["value"] for _ in range(3)]
    refused = client.post(TAKE)
    assert numbers == [1, 2, 3]
    assert refused.status_code == 429
    assert refused.json() == {
        "error": "Too many numbers were taken from your address; try again in "
        f"{refused['Retry-After']} s."
    }
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert stored_value() == 3
    assert CounterEvent.objects.filter(counter_name=GLOBAL).count() == 3


def test_page_and_api_takes_share_one_limit_and_a_page_is_told_why(
    limits, global_counter
):
    client = Client()
    client.post(TAKE)
    client.post("/take/")
    client.post(TAKE)
    response = client.post("/take/")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert 1 <= int(response["Retry-After"]) <= 60
    page = client.get("/").content.decode()
    assert "Nothing was changed: Too many numbers were taken from your address" in (
        page
    )
    assert "Your number is 4" not in page
    assert stored_value() == 3


def test_other_clients_keep_their_own_limit(limits, global_counter):
    first = Client(REMOTE_ADDR="192.0.2.1")
    second = Client(REMOTE_ADDR="192.0.2.2")
    assert [first.post(TAKE).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert second.post(TAKE).json() == {"name": GLOBAL, "value": 4}


def test_own_counter_changes_are_limited_on_pages_and_the_api(limits, db):
    visitor = Client()
    visitor.get("/api/me/")
    headers = {"X-CSRFToken": visitor.cookies["csrftoken"].value}
    assert visitor.post("/api/me/increment/", headers=headers).json() == {"value": 1}
    assert visitor.post("/me/increment/").status_code == 302
    refused = visitor.post("/api/me/reset/", headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"].startswith(
        "Too many changes of your counter came from your address; try again in "
    )
    page = visitor.post("/me/decrement/", follow=True).content.decode()
    assert "Nothing was changed: Too many changes of your counter" in page
    assert visitor.get("/api/me/").json() == {"value": 2}
    # Reading is never limited, and takes have a limit of their own.
    assert visitor.post(TAKE).status_code != 429


def test_signed_in_staff_are_not_limited(limits, global_counter):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    statuses = [client.post("/take/").status_code for _ in range(5)]
    assert statuses == [302] * 5
    assert stored_value() == 5


def test_a_forged_forwarded_for_is_ignored_without_trusted_proxies(
    limits, global_counter
):
    client = Client()
    statuses = [
        client.post(TAKE, headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
        for n in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


def test_behind_trusted_proxies_the_client_is_the_address_they_saw(
    limits, global_counter
):
    limits.COUNTERS_TRUSTED_PROXIES = 1
    proxy = Client(REMOTE_ADDR="10.0.0.1")

    def take(forwarded: str) -> int:
        return proxy.post(TAKE, headers={"X-Forwarded-For": forwarded}).status_code

    # What a client writes before the proxy's entry changes nothing.
    assert [take(f"203.0.113.{n}, 198.51.100.7") for n in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    assert take("198.51.100.8") == 200
    event = CounterEvent.objects.filter(counter_name=GLOBAL).first()
    assert event.actor == "ip:198.51.100.8"


@pytest.mark.parametrize(
    "address, key",
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:1", "2001:db8::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
    ],
)
def test_an_ipv6_client_is_counted_by_its_network(address, key):
    assert client_key(RequestFactory().get("/", REMOTE_ADDR=address)) == key


def test_off_turns_a_limit_off(settings, global_counter):
    settings.COUNTERS_TAKE_RATE = None
    client = Client()
    assert {client.post(TAKE).status_code for _ in range(100)} == {200}


def test_a_project_that_sets_none_of_the_app_settings_gets_no_limit(
    settings, global_counter
):
    # The app's defaults (counters.conf), for a project that names neither.
    del settings.COUNTERS_TAKE_RATE
    del settings.COUNTERS_VISITOR_RATE
    del settings.COUNTERS_TRUSTED_PROXIES
    client = Client()
    assert {client.post(TAKE).status_code for _ in range(100)} == {200}
    assert client.get("/healthz").json()["ratelimit"] == "off"


def test_without_redis_each_process_counts_and_health_says_so(limits):
    assert Client().get("/healthz").json()["ratelimit"] == "local"


def test_with_redis_down_takes_go_on_and_health_reports_the_limiter_degraded(
    limits, redis_outage_server, global_counter
):
    limits.CACHES = {"default": redis_cache(redis_outage_server.url)}
    client = Client()
    assert client.get("/healthz").json()["ratelimit"] == "ok"
    assert client.post(TAKE).status_code == 200
    redis_outage_server.stop()
    statuses = [client.post(TAKE).status_code for _ in range(5)]
    assert statuses == [200] * 5
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["ratelimit"] == "unavailable"
    assert stored_value() == 6


@pytest.mark.parametrize(
    "name, value",
    [
        ("COUNTERS_TAKE_RATE", "fast"),
        ("COUNTERS_TAKE_RATE", "0/minute"),
        ("COUNTERS_TAKE_RATE", "60/fortnight"),
        ("COUNTERS_VISITOR_RATE", "60"),
        ("COUNTERS_VISITOR_RATE", "1/s;5/m"),
    ],
)
def test_a_malformed_rate_stops_with_one_line(name, value):
    result = project_command(
        [sys.executable, "manage.py", "check"], {"DEBUG": "1", name: value}
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: Set {name} to a rate such as 60/minute (or off), not {value!r}."
    ]


def test_malformed_trusted_proxies_stop_with_one_line():
    result = project_command(
        [sys.executable, "manage.py", "check"],
        {"DEBUG": "1", "COUNTERS_TRUSTED_PROXIES": "-1"},
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: Set COUNTERS_TRUSTED_PROXIES to 0 or more, not '-1'."
    ]


# --- Served: two app servers, one Redis ---------------------------------------


def take_from(url: str, source: str) -> tuple[int, dict, str | None]:
    """POST a take to ``url`` from the loopback address ``source``."""
    host_port = url.removeprefix("http://")
    connection = http.client.HTTPConnection(
        host_port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.request("POST", TAKE)
        response = connection.getresponse()
        body = json.loads(response.read())
        return response.status, body, response.getheader("Retry-After")
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_one_limit_holds_across_two_app_servers_on_one_redis(
    postgres, redis_server, serve
):
    redis_server.client().flushall()
    Counter.objects.update_or_create(
        name=GLOBAL, defaults={"value": 0, "public": True, "audit_takes": True}
    )
    env = {
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_server.url,
        "COUNTERS_TAKE_RATE": "4/minute",
    }
    with (
        serve(env, workers=2, threads=4) as first,
        serve(env, workers=2, threads=4) as second,
    ):
        # One client, 127.0.0.2, takes from both servers in turn.
        answers = [take_from(url, "127.0.0.2") for url in (first, second) * 3]
        statuses = [status for status, _, _ in answers]
        assert statuses == [200, 200, 200, 200, 429, 429]
        _, refused, retry_after = answers[4]
        assert refused["error"].startswith("Too many numbers were taken")
        assert 1 <= int(retry_after) <= 60
        # Another client is not affected.
        other = [take_from(url, "127.0.0.3") for url in (second, first)]
        assert [status for status, _, _ in other] == [200, 200]

    numbers = [body["value"] for status, body, _ in answers + other if status == 200]
    # No number was used up by a refusal: 6 answered, 6 consecutive.
    assert sorted(numbers) == list(range(1, 7))
    assert stored_value() == 6
    actors = CounterEvent.objects.values_list("actor", flat=True)
    assert sorted(actors) == ["ip:127.0.0.2"] * 4 + ["ip:127.0.0.3"] * 2
