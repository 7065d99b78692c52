import json

import pytest
from django.test import Client

from counters.api import error_status
from counters.exceptions import CounterNotFound, CounterNotPublic, InvalidStep
from counters.models import INT64_MAX, Counter, CounterEvent

from .support import stored_value

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    # Scripts send no CSRF token: the API must not need one.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def private(db):
    return Counter.objects.create(name="private", value=7)


def test_read_a_counter(api, global_counter):
    response = api.get("/api/counters/global/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"name": "global", "value": 0}


def test_increment_returns_the_number_taken(api, global_counter):
    first = api.post("/api/counters/global/increment/")
    second = api.post("/api/counters/global/increment/")
    assert first.status_code == second.status_code == 200
    assert first.json() == {"name": "global", "value": 1}
    assert second.json() == {"name": "global", "value": 2}


def test_increment_needs_no_cookie_and_sets_none(api, global_counter):
    response = api.post("/api/counters/global/increment/")
    assert response.status_code == 200
    assert not response.cookies


def test_increment_accepts_an_explicit_step_of_one(api, global_counter):
    response = api.post(
        "/api/counters/global/increment/",
        data=json.dumps({"by": 1}),
        content_type="application/json",
    )
    assert response.json() == {"name": "global", "value": 1}


@pytest.mark.parametrize(
    "body, message",
    [
        (
            '{"by": 2}',
            "A take hands out exactly one number: send no step, or a step of 1.",
        ),
        (
            '{"by": true}',
            "A take hands out exactly one number: send no step, or a step of 1.",
        ),
        (
            '{"by": -1}',
            "A take hands out exactly one number: send no step, or a step of 1.",
        ),
        ("{nope", "The request body must be empty or JSON"),
        ("[1]", 'The request body may only hold "by"'),
        ('{"value": 5}', 'The request body may only hold "by"'),
    ],
)
def test_bad_increment_body_is_a_400_and_changes_nothing(
    api, global_counter, body, message
):
    response = api.post(
        "/api/counters/global/increment/", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert stored_value() == 0


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/counters/nope/"),
        ("post", "/api/counters/nope/increment/"),
    ],
)
def test_unknown_counter_is_a_json_404(api, db, method, path):
    response = getattr(api, method)(path)
    assert response.status_code == 404
    assert response.json() == {"error": "There is no counter named 'nope'."}


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/counters/private/"),
        ("post", "/api/counters/private/increment/"),
    ],
)
def test_private_counter_is_a_json_403_and_unchanged(api, private, method, path):
    response = getattr(api, method)(path)
    assert response.status_code == 403
    assert "'private' is not public" in response.json()["error"]
    assert stored_value("private") == 7


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("get", "/api/counters/global/increment/", "POST"),
        ("put", "/api/counters/global/increment/", "POST"),
        ("post", "/api/counters/global/", "GET"),
        ("delete", "/api/counters/global/", "GET"),
    ],
)
def test_wrong_method_is_a_json_405(api, global_counter, method, path, allowed):
    response = getattr(api, method)(path)
    assert response.status_code == 405
    assert response["Allow"] == allowed
    assert response.json() == {
        "error": f"Method {method.upper()} is not allowed here; use {allowed}."
    }
    assert stored_value() == 0


def test_unknown_api_url_is_a_json_404(api, db):
    response = api.get("/api/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"error": "There is nothing at /api/nothing-here/."}


def test_form_encoded_step_other_than_one_is_refused(api, global_counter):
    response = api.post("/api/counters/global/increment/", {"by": "5"})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "A take hands out exactly one number: send no step, or a step of 1."
    )
    assert stored_value() == 0


def test_api_take_records_the_client_address(api, global_counter):
    number = api.post("/api/counters/global/increment/").json()["value"]
    event = CounterEvent.objects.get(counter_name="global", new_value=number)
    assert (event.action, event.source, event.actor) == ("take", "api", "ip:127.0.0.1")


@pytest.mark.parametrize(
    "body",
    ['{"by": 1.0}', '{"by": "1"}', '{"by": " 1"}', '{"by": "+1"}', '{"by": "\\u0661"}'],
)
def test_a_step_that_is_not_the_json_integer_one_is_refused(api, global_counter, body):
    response = api.post(
        "/api/counters/global/increment/", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == (
        "A take hands out exactly one number: send no step, or a step of 1."
    )
    assert stored_value() == 0


@pytest.mark.parametrize("by", ["1", "+1", "01"])
def test_a_form_step_is_a_sign_and_ascii_digits(api, global_counter, by):
    response = api.post("/api/counters/global/increment/", {"by": by})
    assert response.json() == {"name": "global", "value": 1}


@pytest.mark.parametrize("by", [" 1", "1 ", "\u0661", "1_0", "1.0", "", "one"])
def test_a_form_step_of_other_text_is_refused(api, global_counter, by):
    response = api.post("/api/counters/global/increment/", {"by": by})
    assert response.status_code == 400
    assert stored_value() == 0


def test_a_repeated_form_step_is_refused(api, global_counter):
    response = api.post("/api/counters/global/increment/", "by=1&by=1",
                        content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"] == 'Send "by" once, as in by=1.'
    assert stored_value() == 0


def test_a_take_past_the_largest_value_is_a_400(api, global_counter):
    Counter.objects.filter(name="global").update(value=INT64_MAX)
    response = api.post("/api/counters/global/increment/")
    assert response.status_code == 400
    assert "would leave the signed 64-bit range" in response.json()["error"]
    assert stored_value() == INT64_MAX


def test_an_error_status_follows_the_class_hierarchy():
    class Vanished(CounterNotFound):
        pass

    class Hidden(CounterNotPublic):
        pass

    assert error_status(Vanished("gone")) == 404
    assert error_status(Hidden("private")) == 403
    assert error_status(InvalidStep("bad")) == 400


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
