"""
Per-user counters over HTTP against gunicorn with several workers, with the
real PostgreSQL and Redis, and on the embedded SQLite default.
"""

import threading
import time

import pytest
from django.core.cache import cache

from counterproject.settings import redis_cache
from counterproject.testing.servers import migrate
from counterproject.testing.visitors import Visitor, all_at_once
from counters.sessions import COUNTER_KEY

from .support import database_url

pytestmark = pytest.mark.django_db(transaction=True)

INCREMENTS = 50
FLASHES = 20


def assert_no_lost_update(base_url: str) -> None:
    """Send concurrent increments beside other writes of the same session."""
    visitor = Visitor(base_url)
    visitor.post("/api/me/increment/")  # creates the session
    assert "sessionid" in visitor.cookies
    before = visitor.value()

    increment = lambda: visitor.post("/api/me/increment/")  # noqa: E731
    # Each take writes a flash message into the same session.
    flash = lambda: visitor.post("/take/")  # noqa: E731
    calls = [increment] * INCREMENTS + [flash] * FLASHES
    responses = all_at_once(calls)

    assert [r.status_code for r in responses[:INCREMENTS]] == [200] * INCREMENTS
    assert [r.status_code for r in responses[INCREMENTS:]] == [302] * FLASHES
    assert visitor.value() == before + INCREMENTS


def test_concurrent_increments_of_one_session_are_all_kept(
    postgres, redis_server, global_counter, serve
):
    env = {"DATABASE_URL": database_url(), "REDIS_URL": redis_server.url}
    with serve(env, workers=4, threads=8) as base_url:
        assert_no_lost_update(base_url)


def test_concurrent_increments_on_the_embedded_default(tmp_path, serve):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    migrate(env["DATABASE_URL"])
    with serve(env, workers=4, threads=8) as base_url:
        assert_no_lost_update(base_url)


def test_visitors_are_isolated_across_workers(postgres, redis_server, serve):
    env = {"DATABASE_URL": database_url(), "REDIS_URL": redis_server.url}
    with serve(env, workers=2, threads=2) as base_url:
        alice, bob = Visitor(base_url), Visitor(base_url)
        for _ in range(5):
            alice.post("/api/me/increment/")
        bob.post("/api/me/decrement/")
        assert (alice.value(), bob.value()) == (5, -1)
        assert alice.cookies["sessionid"] != bob.cookies["sessionid"]


class Traffic(threading.Thread):
    """Alternate per-user and global increments until stopped (bounded)."""

    LIMIT = 2000
    SECONDS = 60

    def __init__(self, visitor: Visitor) -> None:
        super().__init__(daemon=True)
        self.visitor = visitor
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.mine_ok = 0
        self.numbers: list[int] = []

    def run(self) -> None:
        deadline = time.monotonic() + self.SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            if len(self.statuses) >= self.LIMIT:
                break
            mine = self.visitor.post("/api/me/increment/")
            self.statuses.append(mine.status_code)
            self.mine_ok += mine.status_code == 200
            taken = self.visitor.post("/api/counters/global/increment/")
            self.statuses.append(taken.status_code)
            if taken.status_code == 200:
                self.numbers.append(taken.json()["value"])

    def answered(self, more: int, *, seconds: float = 30) -> int:
        """Wait until ``more`` further requests are answered; return the count then."""
        target = len(self.statuses) + more
        deadline = time.monotonic() + seconds
        while len(self.statuses) < target and self.is_alive():
            if time.monotonic() > deadline:
                pytest.fail(f"{more} requests were not answered within {seconds} s")
            time.sleep(0.05)
        return len(self.statuses)


def test_redis_outage_mid_traffic_loses_nothing(
    postgres, redis_outage_server, global_counter, serve, settings
):
    redis = redis_outage_server
    env = {"DATABASE_URL": database_url(), "REDIS_URL": redis.url}
    settings.CACHES = {"default": redis_cache(redis.url)}
    with serve(env, workers=2, threads=4) as base_url:
        visitor = Visitor(base_url)
        visitor.post("/api/me/increment/")
        traffic = Traffic(visitor)
        traffic.start()
        traffic.answered(10)
        redis.stop()
        # One request may have been in flight when Redis stopped (and one
        # when it came back): the outage's own are those sent after it began
        # and answered before it ended.
        outage_began = len(traffic.statuses) + 1
        outage_ended = traffic.answered(20 + 1)
        redis.start()
        traffic.answered(10)
        traffic.stop.set()
        traffic.join(timeout=30)

        during = traffic.statuses[outage_began:outage_ended]
        assert len(during) > 10, "traffic went on while Redis was down"
        assert set(during) == {200}, "a request failed while Redis was down"
        assert set(traffic.statuses) == {200}
        assert visitor.value() == 1 + traffic.mine_ok
        assert sorted(traffic.numbers) == list(range(1, len(traffic.numbers) + 1))
        # Redis is used again, without a restart of the app.
        key = visitor.cookies["sessionid"]
        visitor.post("/api/me/increment/")
        assert cache.get(f"session:{key}")[COUNTER_KEY] == visitor.value()


def test_redis_back_from_an_old_snapshot_does_not_turn_counters_back(
    postgres, redis_outage_server, serve, settings
):
    redis = redis_outage_server
    env = {"DATABASE_URL": database_url(), "REDIS_URL": redis.url}
    settings.CACHES = {"default": redis_cache(redis.url)}
    with serve(env, workers=2, threads=2) as base_url:
        visitor = Visitor(base_url)
        for _ in range(5):
            visitor.post("/api/me/increment/")
        key = visitor.cookies["sessionid"]
        redis.client().save()  # the snapshot Redis will come back with
        redis.stop()
        for _ in range(3):
            assert visitor.post("/api/me/increment/").status_code == 200
        redis.start()
        # Redis really holds the older entry now.
        assert cache.get(f"session:{key}")[COUNTER_KEY] == 5

        assert visitor.value() == 8
        assert visitor.post("/api/me/increment/").json() == {"value": 9}
        assert cache.get(f"session:{key}")[COUNTER_KEY] == 9
