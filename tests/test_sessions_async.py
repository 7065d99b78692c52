"""
The session engine's async twins keep the sync methods' guarantees (#26).

Each scenario runs in a real event loop, as an ASGI request does: its sync
code in a thread of its own (``ThreadSensitiveContext``, as Django's
ASGIHandler gives each request), on real PostgreSQL and Redis.
"""

import asyncio
import threading

import pytest
from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async
from django.contrib.auth import SESSION_KEY, alogin, alogout
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection, transaction
from django.test import RequestFactory

from counters.sessions import COUNTER_KEY, SessionStore

# Transactional: the engine writes the cache only once the database commits,
# and each request's thread has a connection of its own.
pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 20
BACKEND = "django.contrib.auth.backends.ModelBackend"


class Boom(Exception):
    pass


def add(by: int):
    """Return a counter change that adds ``by``."""
    return lambda value: value + by


async def as_request(work):
    """Await ``work()`` as one ASGI request: its sync code in its own thread."""
    async with ThreadSensitiveContext():
        try:
            return await work()
        finally:
            # Threads get no request-end cleanup. (connection.close would be
            # looked up here, in the loop's thread, not in the request's.)
            await sync_to_async(lambda: connection.close())()


def run(work):
    """Run ``work()`` as one request in an event loop of its own."""
    return asyncio.run(as_request(work))


def test_concurrent_async_updates_of_one_session_lose_none(redis_cache_settings):
    store = SessionStore()
    store.update_counter(add(0))
    key = store.session_key
    start = threading.Barrier(REQUESTS, timeout=30)
    threads = set()

    def change(value: int) -> int:
        threads.add(threading.get_ident())
        return value + 1

    async def request():
        # Every request's thread is ready before any of them updates.
        await sync_to_async(start.wait)()
        return await SessionStore(key).aupdate_counter(change)

    async def requests():
        return await asyncio.gather(*(as_request(request) for _ in range(REQUESTS)))

    values = asyncio.run(requests())

    assert len(threads) == REQUESTS  # really one thread, and connection, each
    assert sorted(values) == list(range(1, REQUESTS + 1))
    assert store.counter_value() == REQUESTS
    # Not asserted: the cached copy. Two commits' on_commit hooks may run in
    # the other order, so it can hold 19; the counter is read from the row.


def test_an_async_update_gives_a_new_visitor_a_session(redis_cache_settings):
    store = SessionStore()

    assert run(lambda: store.aupdate_counter(add(3))) == 3

    assert store.session_key is not None
    assert SessionStore(store.session_key).counter_value() == 3
    assert cache.get(f"session:{store.session_key}")[COUNTER_KEY] == 3
    assert store[COUNTER_KEY] == 3
    # Modified, as after create(): the middleware sends the new cookie.
    assert store.accessed and store.modified


def test_an_async_update_that_raises_changes_nothing(redis_cache_settings):
    store = SessionStore()
    store.update_counter(add(1))

    def refuse(value: int) -> int:
        raise Boom(f"not from {value}")

    with pytest.raises(Boom, match="not from 1"):
        run(lambda: SessionStore(store.session_key).aupdate_counter(refuse))
    assert run(SessionStore(store.session_key).acounter_value) == 1


def test_a_stale_copy_saved_later_by_asave_keeps_the_stored_counter(
    redis_cache_settings,
):
    first = SessionStore()
    first.update_counter(add(1))
    key = first.session_key

    async def requests():
        # Two requests of one session load it at the same time…
        slow, fast = SessionStore(key), SessionStore(key)
        await slow.aset("note", "written by a slow request")
        await fast.aupdate_counter(add(10))
        # …and the slow one saves last, holding the counter it loaded (1).
        await slow.asave()
        fresh = SessionStore(key)
        return (
            await fresh.acounter_value(),
            await fresh.aget(COUNTER_KEY),
            await fresh.aget("note"),
        )

    assert run(requests) == (11, 11, "written by a slow request")


def test_counter_value_is_read_from_the_database_not_a_stale_cache(
    redis_cache_settings,
):
    store = SessionStore()
    store.update_counter(add(3))
    # What a Redis restarted from an old snapshot would hold.
    cache.set(f"session:{store.session_key}", {COUNTER_KEY: 1})

    assert run(SessionStore(store.session_key).acounter_value) == 3
    assert run(SessionStore().acounter_value) == 0


def test_async_login_keeps_the_counter_the_database_holds(redis_cache_settings):
    user = User.objects.create_user("ann")
    first = SessionStore()
    first.update_counter(add(1))
    key = first.session_key
    request = RequestFactory().post("/login/")
    request.session = SessionStore(key)

    async def log_in():
        # This request loaded the session when the counter was 1…
        assert await request.session.aget(COUNTER_KEY) == 1
        # …another tab adds 10 meanwhile…
        await SessionStore(key).aupdate_counter(add(10))
        # …and then this request logs in, which gives the session a new key.
        await alogin(request, user, backend=BACKEND)
        await request.session.asave()

    run(log_in)

    new_key = request.session.session_key
    assert new_key != key
    assert SessionStore(new_key).counter_value() == 11
    assert SessionStore(new_key)[SESSION_KEY] == str(user.pk)
    assert not Session.objects.filter(session_key=key).exists()
    assert cache.get(f"session:{key}") is None
    assert cache.get(f"session:{new_key}")[COUNTER_KEY] == 11


def test_acycle_key_keeps_the_counter(redis_cache_settings):
    store = SessionStore()
    store.update_counter(add(7))
    old_key = store.session_key

    async def cycle():
        await store.acycle_key()
        await store.asave()

    run(cycle)

    assert store.session_key != old_key
    assert SessionStore(store.session_key).counter_value() == 7


def test_async_logout_removes_the_row_and_the_cached_copy(redis_cache_settings):
    user = User.objects.create_user("bob")
    request = RequestFactory().post("/logout/")
    request.session = SessionStore()

    async def log_in():
        await alogin(request, user, backend=BACKEND)
        await request.session.asave()

    run(log_in)
    key = request.session.session_key
    assert cache.get(f"session:{key}")[SESSION_KEY] == str(user.pk)

    run(lambda: alogout(request))

    assert request.session.session_key is None
    assert not Session.objects.filter(session_key=key).exists()
    assert cache.get(f"session:{key}") is None


def test_a_stale_cache_cannot_log_a_deleted_session_back_in_async(
    redis_cache_settings,
):
    store = SessionStore()
    store[SESSION_KEY] = "1"
    store.save()
    key = store.session_key
    # A logout whose cache delete was lost in a Redis outage: the row is
    # gone, the cached copy is still there.
    Session.objects.filter(session_key=key).delete()
    assert cache.get(f"session:{key}")[SESSION_KEY] == "1"

    reloaded = SessionStore(key)
    assert run(reloaded.aload) == {}
    assert reloaded.session_key is None
    # The stale copy is gone too, not found again on every request.
    assert cache.get(f"session:{key}") is None

    # The dict-like twins load through aload() as well.
    other = SessionStore()
    other[SESSION_KEY] = "2"
    other.save()
    Session.objects.filter(session_key=other.session_key).delete()
    assert run(lambda: SessionStore(other.session_key).aget(SESSION_KEY)) is None
    assert cache.get(f"session:{other.session_key}") is None


def test_the_cache_never_holds_what_an_async_twin_wrote_and_rolled_back(
    redis_cache_settings,
):
    # A sync view's transaction around async code (async_to_sync): the twins'
    # sync code runs back in this thread, inside the transaction.
    store = SessionStore()
    with pytest.raises(Boom), transaction.atomic():
        async_to_sync(store.acreate)()
        created = store.session_key
        raise Boom
    assert cache.get(f"session:{created}") is None

    store = SessionStore()
    store.update_counter(add(3))
    old = store.session_key
    with pytest.raises(Boom), transaction.atomic():
        async_to_sync(store.aupdate_counter)(add(1))
        async_to_sync(store.aset)("note", "rolled back")
        async_to_sync(store.asave)()
        raise Boom
    assert cache.get(f"session:{old}") == {COUNTER_KEY: 3}

    with pytest.raises(Boom), transaction.atomic():
        async_to_sync(store.adelete)()
        raise Boom
    assert cache.get(f"session:{old}") == {COUNTER_KEY: 3}

    with pytest.raises(Boom), transaction.atomic():
        async_to_sync(store.acycle_key)()
        new = store.session_key
        async_to_sync(store.adelete)(new)
        raise Boom
    # Neither the new key nor the deletes reached the cache.
    assert cache.get(f"session:{new}") is None
    assert cache.get(f"session:{old}") == {COUNTER_KEY: 3}
    assert SessionStore(old).counter_value() == 3
