"""
The admin's audit trail with many entries (#23): counted up to a bound, its
filters and its one sortable column served by indexes.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from counters.actors import Actor
from counters.models import Counter, Source
from counters.pagination import EXACT_UP_TO
from counters.services import counter_history_prune, counter_reset

from .trail import CUT, OLD, entries_at

pytestmark = pytest.mark.django_db

TRAIL = "/admin/counters/counterevent/"
STAFF = Actor(Source.ADMIN, "user:staff")


def unbounded_counts(queries) -> list[str]:
    """Return the COUNT queries that read without a LIMIT."""
    return [
        q["sql"]
        for q in queries
        if "COUNT(" in q["sql"].upper() and "LIMIT" not in q["sql"].upper()
    ]


def test_a_short_trail_is_counted_exactly_within_a_bound(admin_client):
    Counter.objects.create(name="tickets")
    entries_at("tickets", 150, OLD)
    counter_reset("tickets", actor=STAFF)
    with CaptureQueriesContext(connection) as queries:
        everything = admin_client.get(TRAIL).context["cl"]
        resets = admin_client.get(TRAIL, {"action__exact": "reset"}).context["cl"]
    assert (everything.result_count, everything.paginator.num_pages) == (151, 2)
    assert [e.action for e in resets.result_list] == ["reset"]
    assert resets.result_count == 1
    assert unbounded_counts(queries) == []


def test_a_prune_shows_in_the_trail_under_its_action(admin_client):
    Counter.objects.create(name="tickets")
    entries_at("tickets", 3, OLD)
    counter_history_prune(None, before=CUT, actor=Actor(Source.CLI, "os:ops"))
    response = admin_client.get(TRAIL, {"action__exact": "prune"})
    [entry] = response.context["cl"].result_list
    assert (entry.counter_name, entry.old_value, entry.actor) == ("*", 3, "os:ops")
    assert "prune history" in response.content.decode()


def test_only_the_date_column_is_sortable(admin_client):
    Counter.objects.create(name="tickets")
    entries_at("tickets", 2, OLD)
    html = admin_client.get(TRAIL).content.decode()
    assert "sortable column-created_at" in html
    assert "sortable column-counter_name" not in html
    assert "sortable column-actor" not in html


@pytest.fixture
def long_trail(admin_client, postgres):
    """Fill the trail with 100,000 entries, a few of them rare or old."""
    Counter.objects.create(name="c7")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO counters_counterevent
                (counter_name, action, old_value, new_value, source, actor,
                 created_at)
            SELECT CASE WHEN i %% 1000 = 2 THEN 'rare' ELSE 'c' || (i %% 50) END,
                   CASE WHEN i %% 1000 = 0 THEN 'reset' ELSE 'take' END,
                   i - 1, i,
                   CASE WHEN i %% 1000 = 1 THEN 'cli'
                        WHEN i %% 3 = 0 THEN 'web' ELSE 'api' END,
                   'ip:127.0.0.1',
                   CASE WHEN i <= 500 THEN %s ELSE now() END
                       + i * interval '1 millisecond'
            FROM generate_series(1, 100000) AS i
            """,
            [OLD],
        )
        cursor.execute("ANALYZE counters_counterevent")
    return admin_client


def plan(sql: str, params=()) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return " ".join(row[0] for row in cursor.fetchall())


def test_a_long_trail_is_estimated_not_counted(long_trail):
    with CaptureQueriesContext(connection) as queries:
        everything = long_trail.get(TRAIL).context["cl"]
        by_source = long_trail.get(TRAIL, {"source__exact": "api"}).context["cl"]
        resets = long_trail.get(TRAIL, {"action__exact": "reset"}).context["cl"]
        page_50 = long_trail.get(TRAIL, {"p": "50"}).context["cl"]
    assert unbounded_counts(queries) == []
    # Past the bound, the planner's estimate (exact enough after ANALYZE).
    assert everything.result_count > EXACT_UP_TO
    assert abs(everything.result_count - 100_000) < 10_000
    assert abs(by_source.result_count - 66_600) < 10_000
    # Within it, the exact count.
    assert resets.result_count == 100
    assert len(page_50.result_list) == 100
    assert page_50.result_list[0].new_value == 100_000 - 49 * 100


def test_each_filter_and_the_prune_walk_an_index(long_trail):
    newest_first = "SELECT * FROM counters_counterevent {} ORDER BY id DESC LIMIT 100"
    # A rare value is found through its own index; a common one (a third of
    # the trail) through its own or by walking the primary key down.
    plans = {
        ("event_action_idx",): plan(newest_first.format("WHERE action = 'reset'")),
        ("event_source_idx",): plan(newest_first.format("WHERE source = 'cli'")),
        ("event_counter_idx",): plan(
            newest_first.format("WHERE counter_name = 'rare'")
        ),
        ("event_source_idx", "counters_counterevent_pkey"): plan(
            newest_first.format("WHERE source = 'web'")
        ),
        # Sorted by when (ties broken by the id).
        ("event_created_idx",): plan(
            "SELECT * FROM counters_counterevent ORDER BY created_at, id DESC LIMIT 100"
        ),
    }
    for indexes, found in plans.items():
        assert any(index in found for index in indexes), found
        # (The planner may sort the hundred rows of a rare value: no more.)
        assert "Seq Scan" not in found, found
    # A prune finds the old entries without reading the others.
    old = plan(
        "SELECT MAX(id) FROM counters_counterevent WHERE created_at < %s "
        "AND NOT action = 'prune'",
        [CUT],
    )
    assert "event_created_idx" in old and "Seq Scan" not in old, old
