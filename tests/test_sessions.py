"""Per-user counters kept in cached sessions (Redis through django-redis)."""

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from counters.exceptions import InvalidStep, OutOfRange
from counters.models import INT64_MAX
from counters.services import session_counter_increment
from counters.sessions import COUNTER_KEY, SessionStore

# Transactional: the engine writes the cache only once the database commits.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def visitor(redis_cache_settings):
    """A browser-like client that has fetched the CSRF cookie."""
    client = Client(enforce_csrf_checks=True)
    assert client.get("/api/me/").status_code == 200
    return client


def post(client: Client, path: str, **extra):
    token = client.cookies["csrftoken"].value
    return client.post(path, HTTP_X_CSRFTOKEN=token, **extra)


def test_new_visitor_starts_at_zero_without_a_session(redis_cache_settings):
    client = Client()
    response = client.get("/api/me/")
    assert response.json() == {"value": 0}
    assert "csrftoken" in response.cookies
    assert "sessionid" not in response.cookies
    assert Session.objects.count() == 0


def test_first_increment_creates_the_session(visitor):
    response = post(visitor, "/api/me/increment/")
    assert response.status_code == 200
    assert response.json() == {"value": 1}
    assert "sessionid" in response.cookies
    assert post(visitor, "/api/me/increment/").json() == {"value": 2}
    assert post(visitor, "/api/me/decrement/").json() == {"value": 1}
    assert visitor.get("/api/me/").json() == {"value": 1}
    assert post(visitor, "/api/me/reset/").json() == {"value": 0}


def test_session_is_cached_in_redis_under_the_project_prefix(
    visitor, redis_cache_settings
):
    post(visitor, "/api/me/increment/")
    key = visitor.cookies["sessionid"].value
    stored = redis_cache_settings.client().keys("*")
    assert stored == [f"counters:1:session:{key}".encode()]
    assert cache.get(f"session:{key}")[COUNTER_KEY] == 1
    row = Session.objects.get(session_key=key)
    assert SessionStore().decode(row.session_data)[COUNTER_KEY] == 1


def test_two_visitors_never_see_each_others_counters(redis_cache_settings):
    alice = Client(enforce_csrf_checks=True)
    bob = Client(enforce_csrf_checks=True)
    for client in (alice, bob):
        client.get("/api/me/")
    for _ in range(3):
        post(alice, "/api/me/increment/")
    post(bob, "/api/me/decrement/")
    assert alice.get("/api/me/").json() == {"value": 3}
    assert bob.get("/api/me/").json() == {"value": -1}
    assert Client().get("/api/me/").json() == {"value": 0}


def test_post_without_csrf_token_is_a_json_403(visitor):
    post(visitor, "/api/me/increment/")
    response = visitor.post("/api/me/increment/")
    assert response.status_code == 403
    assert "X-CSRFToken" in response.json()["error"]
    assert visitor.get("/api/me/").json() == {"value": 1}


def test_step_can_be_given_as_json(visitor):
    response = post(
        visitor, "/api/me/increment/", data={"by": 5}, content_type="application/json"
    )
    assert response.json() == {"value": 5}
    response = post(
        visitor, "/api/me/decrement/", data={"by": 2}, content_type="application/json"
    )
    assert response.json() == {"value": 3}


@pytest.mark.parametrize(
    "body, message",
    [
        ({"by": 0}, "The step must be a positive integer, not 0."),
        ({"by": "x"}, "The step must be a positive integer, not 'x'."),
        ({"by": 1.5}, "The step must be a positive integer, not 1.5."),
        ({"by": 1.0}, "The step must be a positive integer, not 1.0."),
        ({"by": True}, "The step must be a positive integer, not True."),
        ({"by": None}, "The step must be a positive integer, not None."),
        ({"by": "1"}, "The step must be a positive integer, not '1'."),
        ({"by": -2}, "to go the other way, decrement by 2 instead."),
        ({"step": 1}, 'The request body may only hold "by"'),
    ],
)
def test_bad_step_is_a_json_400_and_changes_nothing(visitor, body, message):
    post(visitor, "/api/me/increment/")
    response = post(
        visitor, "/api/me/increment/", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert visitor.get("/api/me/").json() == {"value": 1}


def test_wrong_method_is_a_json_405(visitor):
    response = visitor.get("/api/me/increment/")
    assert response.status_code == 405
    assert response.json()["error"] == "Method GET is not allowed here; use POST."


def test_leaving_64_bits_is_refused(visitor):
    post(
        visitor,
        "/api/me/increment/",
        data={"by": INT64_MAX},
        content_type="application/json",
    )
    response = post(visitor, "/api/me/increment/")
    assert response.status_code == 400
    assert "Your counter is at" in response.json()["error"]
    assert visitor.get("/api/me/").json() == {"value": INT64_MAX}


def test_page_buttons_change_the_counter_and_flash_the_value(redis_cache_settings):
    client = Client()
    page = client.get("/me/").content.decode()
    assert 'data-testid="value">0<' in page
    for action in ("increment", "decrement", "reset"):
        assert f'action="/me/{action}/"' in page

    response = client.post("/me/increment/")
    assert response.status_code == 302 and response["Location"] == "/me/"
    page = client.get("/me/").content.decode()
    assert "Your counter is now 1" in page and 'data-testid="value">1<' in page
    assert "Your counter is now" not in client.get("/me/").content.decode()

    client.post("/me/increment/")
    client.post("/me/decrement/")
    assert "Your counter is now 1" in client.get("/me/").content.decode()
    client.post("/me/reset/")
    page = client.get("/me/").content.decode()
    assert "Your counter is now 0" in page and 'data-testid="value">0<' in page
    assert client.get("/me/increment/").status_code == 405


def test_a_stale_copy_saved_later_keeps_the_stored_counter(redis_cache_settings):
    first = SessionStore()
    session_counter_increment(first)
    key = first.session_key

    # Two requests of one session load it at the same time…
    slow, fast = SessionStore(key), SessionStore(key)
    slow["note"] = "written by a slow request"
    session_counter_increment(fast, by=10)
    # …and the slow one saves last, holding the counter it loaded (1).
    slow.save()

    fresh = SessionStore(key)
    assert fresh.counter_value() == 11
    assert fresh[COUNTER_KEY] == 11
    assert fresh["note"] == "written by a slow request"


def test_counter_is_read_from_the_database_not_a_stale_cache(visitor):
    for _ in range(3):
        post(visitor, "/api/me/increment/")
    key = visitor.cookies["sessionid"].value
    # What a Redis restarted from an old snapshot would hold.
    cache.set(f"session:{key}", {COUNTER_KEY: 1})
    assert visitor.get("/api/me/").json() == {"value": 3}
    assert post(visitor, "/api/me/increment/").json() == {"value": 4}
    assert cache.get(f"session:{key}")[COUNTER_KEY] == 4


def test_a_new_session_key_keeps_the_counter(redis_cache_settings):
    store = SessionStore()
    session_counter_increment(store, by=7)
    old_key = store.session_key
    store.cycle_key()  # as login() does
    store.save()
    assert store.session_key != old_key
    assert SessionStore(store.session_key).counter_value() == 7


def test_service_errors_change_nothing(redis_cache_settings):
    store = SessionStore()
    session_counter_increment(store)
    with pytest.raises(InvalidStep):
        session_counter_increment(store, by=0)
    with pytest.raises(OutOfRange):
        session_counter_increment(store, by=INT64_MAX)
    assert SessionStore(store.session_key).counter_value() == 1


def test_login_keeps_the_counter_the_database_holds(redis_cache_settings):
    first = SessionStore()
    session_counter_increment(first)
    key = first.session_key
    # This request loaded the session when the counter was 1…
    logging_in = SessionStore(key)
    assert logging_in[COUNTER_KEY] == 1
    # …another tab adds 10 meanwhile…
    session_counter_increment(SessionStore(key), by=10)
    # …and then this request logs in, which gives the session a new key.
    logging_in.cycle_key()
    logging_in.save()
    assert logging_in.session_key != key
    assert SessionStore(logging_in.session_key).counter_value() == 11
    assert not Session.objects.filter(session_key=key).exists()


def test_a_stale_cache_cannot_log_a_deleted_session_back_in(redis_cache_settings):
    store = SessionStore()
    store[SESSION_KEY] = "1"
    store.save()
    key = store.session_key
    # A logout whose cache delete was lost in a Redis outage: the row is
    # gone, the cached copy is still there.
    Session.objects.filter(session_key=key).delete()
    assert cache.get(f"session:{key}")[SESSION_KEY] == "1"

    reloaded = SessionStore(key)
    assert reloaded.load() == {}
    assert reloaded.session_key is None
    # The stale copy is gone too, not found again on every request.
    assert cache.get(f"session:{key}") is None


class Boom(Exception):
    pass


def test_the_cache_never_holds_a_session_that_was_rolled_back(redis_cache_settings):
    store = SessionStore()
    with pytest.raises(Boom), transaction.atomic():
        store.create()
        created = store.session_key
        raise Boom
    assert cache.get(f"session:{created}") is None

    session_counter_increment(store, by=3)
    old = store.session_key
    assert cache.get(f"session:{old}")[COUNTER_KEY] == 3
    with pytest.raises(Boom), transaction.atomic():
        store.cycle_key()
        new = store.session_key
        store.delete(new)
        raise Boom
    # Neither the new key nor the deletes reached the cache.
    assert cache.get(f"session:{new}") is None
    assert cache.get(f"session:{old}")[COUNTER_KEY] == 3
    assert SessionStore(old).counter_value() == 3


def test_an_increment_reads_the_session_once(redis_cache_settings):
    store = SessionStore()
    session_counter_increment(store)
    request = SessionStore(store.session_key)
    redis = redis_cache_settings.client()
    redis.config_resetstat()
    with CaptureQueriesContext(connection) as queries:
        assert session_counter_increment(request) == 2
    # The locked read of the row, and no second read of the whole session
    # after the write: neither from the database nor from the cache.
    assert len([q for q in queries if q["sql"].startswith("SELECT")]) == 1
    assert "cmdstat_get" not in redis.info("commandstats")
    assert request[COUNTER_KEY] == 2
    assert request.accessed and not request.modified


@pytest.mark.parametrize(
    "body, message",
    [
        ({"by": -1}, "not -1: to go the other way, decrement by 1 instead."),
        ({"by": "1_000"}, "The step must be a positive integer, not '1_000'."),
        ({"by": 2**63}, "The step 9223372036854775808 is outside the signed 64-bit"),
    ],
)
def test_a_refused_step_creates_no_session(visitor, body, message):
    response = post(
        visitor, "/api/me/increment/", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert "sessionid" not in response.cookies
    assert Session.objects.count() == 0
    assert visitor.get("/api/me/").json() == {"value": 0}


def test_a_form_step_in_another_script_is_refused(visitor):
    response = post(visitor, "/api/me/increment/", data={"by": "1_000"})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "The step must be a positive integer, not '1_000'."
    )


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
