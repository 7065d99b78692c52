"""
The ASGI path: takes that wait together in the event loop share a batch.

``counters.combining.acombine`` is driven with a real event loop and real
threads; the take with real PostgreSQL transactions; and the ASGI
application (``counterproject.asgi``) with real ASGI messages, in process.
(tests/test_workers.py serves it with gunicorn's ASGI worker.)
"""

import asyncio
import json
import re
import threading
import time

import pytest
from django.test import RequestFactory

from counterproject import asgi
from counterproject.asgi import TwinASGIHandler
from counters import api, combining
from counters.actors import Actor
from counters.combining import acombine
from counters.exceptions import CounterNotPublic
from counters.models import Counter, CounterEvent, Source
from counters.services import acounter_take

from .support import row_lock_held, stored_value, transactions_of_takes


class Boom(Exception):
    pass


async def queued(key, count: int, *, seconds: float = 30.0) -> None:
    """
    Wait until a batch of lane ``key`` runs and ``count`` calls wait for the
    next one.
    """
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + seconds
    while (waiting := combining._async_lanes.get((loop, key))) is None or len(
        waiting
    ) != count:
        if time.monotonic() > deadline:
            pytest.fail(f"{count} calls did not queue on {key!r} within {seconds} s")
        await asyncio.sleep(0.005)


def gated(results):
    """Return a batch function whose first batch waits for ``release``."""
    batches, running, release = [], threading.Event(), threading.Event()

    def run(items):
        batches.append(list(items))
        if len(batches) == 1:
            running.set()
            release.wait(10)
        return results(items)

    return run, batches, running, release


async def first_then_rest(key, run, running, release, rest):
    """Start one call, queue ``rest`` behind its batch, then let it end."""
    first = asyncio.ensure_future(acombine(key, 0, run))
    assert await asyncio.to_thread(running.wait, 10)
    others = [asyncio.ensure_future(acombine(key, item, run)) for item in rest]
    await queued(key, len(rest))
    release.set()
    return await asyncio.gather(first, *others, return_exceptions=True)


def test_calls_that_wait_together_in_the_loop_run_as_one_batch():
    run, batches, running, release = gated(lambda items: [i * 10 for i in items])

    results = asyncio.run(first_then_rest("a", run, running, release, range(1, 6)))

    assert results == [0, 10, 20, 30, 40, 50]
    assert batches == [[0], [1, 2, 3, 4, 5]]
    # The lane is dropped once it runs dry.
    assert not combining._async_lanes


def test_a_failed_batch_fails_each_of_its_calls_with_an_error_of_its_own():
    def results(items):
        if items != [0]:
            raise Boom(f"batch of {len(items)} failed")
        return items

    run, _, running, release = gated(results)

    first, *errors = asyncio.run(first_then_rest("b", run, running, release, "xyz"))

    assert first == 0
    assert [type(e) for e in errors] == [Boom, Boom, Boom]
    assert {str(e) for e in errors} == {"batch of 3 failed"}
    assert len({id(e) for e in errors}) == 3
    # The lane is free again afterwards.
    assert asyncio.run(acombine("b", "e", lambda items: items)) == "e"


def test_a_batch_can_refuse_one_call_alone():
    def results(items):
        return [Boom(f"no {i}") if i == 2 else i for i in items]

    run, _, running, release = gated(results)

    outcome = asyncio.run(first_then_rest("c", run, running, release, [1, 2, 3]))

    assert outcome[:2] == [0, 1] and outcome[3] == 3
    assert isinstance(outcome[2], Boom) and str(outcome[2]) == "no 2"


# --- The take, on PostgreSQL --------------------------------------------------

API = Actor(Source.API, "ip:192.0.2.1")


@pytest.mark.django_db(transaction=True)
def test_async_takes_queued_in_the_loop_share_one_transaction(postgres):
    Counter.objects.create(name="loop", public=True, audit_takes=True)

    async def takes(release):
        first = asyncio.ensure_future(acounter_take("loop", actor=API))
        # The first take's batch waits in the database for the row lock.
        await queued(("take", "loop"), 0)
        rest = [
            asyncio.ensure_future(acounter_take("loop", actor=API, public_only=True))
            for _ in range(20)
        ]
        await queued(("take", "loop"), 20)
        release()
        return await first, await asyncio.gather(*rest)

    with row_lock_held(postgres, "loop") as release:
        first, numbers = asyncio.run(takes(release))

    assert first == 1
    assert sorted(numbers) == list(range(2, 22))
    assert stored_value("loop") == 21
    assert transactions_of_takes("loop") == 1  # all twenty in one transaction
    assert CounterEvent.objects.filter(counter_name="loop").count() == 21


@pytest.mark.django_db(transaction=True)
def test_an_async_take_of_a_private_counter_is_refused_alone():
    Counter.objects.create(name="hidden", public=False)

    async def take():
        return await asyncio.gather(
            acounter_take("hidden", actor=API, public_only=True),
            acounter_take("hidden", actor=API),
            return_exceptions=True,
        )

    refused, number = asyncio.run(take())

    assert isinstance(refused, CounterNotPublic)
    assert number == 1
    assert stored_value("hidden") == 1


# --- The ASGI application -------------------------------------------------------


async def asgi_call(method: str, path: str, body: bytes = b"", headers=()):
    """Send one request to the ASGI application; return (status, headers, body)."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    disconnect = asyncio.Event()

    async def receive():
        if messages:
            return messages.pop(0)
        await disconnect.wait()
        return {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), *headers],
        "client": ("192.0.2.9", 40000),
        "server": ("localhost", 80),
    }
    # A handler of the test's own: counterproject.asgi's was made when it was
    # imported, which may be before the suite collected the static files.
    await TwinASGIHandler()(scope, receive, send)
    disconnect.set()
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(
        m.get("body", b"") for m in sent if m["type"] == "http.response.body"
    )
    return start["status"], dict(start["headers"]), content


def test_asgi_serves_the_takes_async_twin_and_other_views_as_they_are():
    assert isinstance(asgi.application, TwinASGIHandler)
    handler = TwinASGIHandler()
    take = RequestFactory().post("/api/counters/global/increment/")
    detail = RequestFactory().get("/api/counters/global/")
    assert handler.resolve_request(take).func is api.acounter_take_number
    assert handler.resolve_request(detail).func is api.counter_detail


@pytest.mark.django_db(transaction=True)
def test_the_asgi_take_answers_numbers_and_every_error_in_json(global_counter):
    Counter.objects.create(name="private", value=7)
    json_body = [(b"content-type", b"application/json")]
    cases = [
        ("POST", "/api/counters/global/increment/", b"", 200, {"value": 1}),
        ("POST", "/api/counters/global/increment/", b"", 200, {"value": 2}),
        ("GET", "/api/counters/global/increment/", b"", 405, "not allowed"),
        ("POST", "/api/counters/nope/increment/", b"", 404, "no counter"),
        ("POST", "/api/counters/private/increment/", b"", 403, "not public"),
        ("POST", "/api/counters/global/increment/", b'{"by": 2}', 400, "a step of 1"),
        ("POST", "/api/counters/global/increment/", b"{nope", 400, "must be empty"),
    ]
    for method, path, body, status, expected in cases:
        code, headers, content = asyncio.run(asgi_call(method, path, body, json_body))
        assert (code, headers[b"Content-Type"]) == (status, b"application/json")
        answer = json.loads(content)
        if status == 200:
            assert answer == {"name": "global", **expected}
        else:
            assert expected in answer["error"]
    assert stored_value() == 2
    assert stored_value("private") == 7
    assert CounterEvent.objects.filter(source=Source.API).count() == 2


@pytest.mark.django_db(transaction=True)
def test_asgi_serves_static_files_from_the_event_loop(global_counter):
    status, headers, content = asyncio.run(asgi_call("GET", "/"))
    assert status == 200
    css = re.search(rb'href="(/static/counters/site\.[0-9a-f]{12}\.css)"', content)
    assert css, content[:500]
    status, headers, content = asyncio.run(asgi_call("GET", css.group(1).decode()))
    assert status == 200
    assert headers[b"Content-Type"].startswith(b"text/css")
    assert content


@pytest.mark.django_db(transaction=True)
def test_the_asgi_take_is_rate_limited_too(global_counter, settings):
    settings.COUNTERS_TAKE_RATE = "2/minute"
    take = "/api/counters/global/increment/"
    answers = [asyncio.run(asgi_call("POST", take)) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429]
    _, headers, content = answers[2]
    assert 1 <= int(headers[b"Retry-After"]) <= 60
    assert json.loads(content)["error"].startswith("Too many numbers were taken")
    assert stored_value() == 2
