import json

import pytest
from django.test import Client

from counters.models import Counter, CounterEvent

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
        ('{"by": 2}', "Anonymous clients may only increment by exactly 1."),
        ('{"by": true}', "Anonymous clients may only increment by exactly 1."),
        ('{"by": -1}', "Anonymous clients may only increment by exactly 1."),
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
    assert Counter.objects.get(name="global").value == 0


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
    assert Counter.objects.get(name="private").value == 7


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
    assert Counter.objects.get(name="global").value == 0


def test_unknown_api_url_is_a_json_404(api, db):
    response = api.get("/api/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"error": "There is nothing at /api/nothing-here/."}


def test_form_encoded_step_other_than_one_is_refused(api, global_counter):
    response = api.post("/api/counters/global/increment/", {"by": "5"})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "Anonymous clients may only increment by exactly 1."
    )
    assert Counter.objects.get(name="global").value == 0


def test_api_take_records_the_client_address(api, global_counter):
    number = api.post("/api/counters/global/increment/").json()["value"]
    event = CounterEvent.objects.get(counter_name="global", new_value=number)
    assert (event.action, event.source, event.actor) == ("take", "api", "ip:127.0.0.1")
