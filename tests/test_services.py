import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from counters.actors import Actor
from counters.exceptions import (
    CounterExists,
    CounterNotFound,
    CounterNotPublic,
    CounterProtected,
    InvalidName,
    InvalidStep,
    OutOfRange,
)
from counters.models import (
    INT64_MAX,
    INT64_MIN,
    Action,
    Counter,
    CounterEvent,
    Source,
)
from counters.selectors import counter_get, counter_history, counter_list
from counters.services import (
    counter_configure,
    counter_create,
    counter_decrement,
    counter_delete,
    counter_increment,
    counter_reset,
    counter_set,
    counter_take,
)

from .support import stored_value

# Each test runs inside a transaction (db) and in autocommit
# (transactional_db): the services must behave the same in both.
pytestmark = pytest.mark.parametrize(
    "database",
    [
        pytest.param("db", marks=pytest.mark.django_db),
        pytest.param("transactional_db", marks=pytest.mark.django_db(transaction=True)),
    ],
)


@pytest.fixture
def counter(database):
    return Counter.objects.create(name="tickets", value=10)


def test_runs_in_the_mode_it_names(database):
    assert connection.in_atomic_block is (database == "db")


def test_take_returns_consecutive_numbers(counter):
    assert [counter_take("tickets") for _ in range(3)] == [11, 12, 13]
    assert stored_value("tickets") == 13


def test_increment_and_decrement_by_a_step(counter):
    assert counter_increment("tickets", by=5) == 15
    assert counter_decrement("tickets", by=3) == 12
    assert counter_decrement("tickets", by=2) == 10
    assert counter_decrement("tickets") == 9
    assert stored_value("tickets") == 9


@pytest.mark.parametrize(
    "service, message",
    [
        (counter_increment, "not -5: to go the other way, decrement by 5 instead."),
        (counter_decrement, "not -5: to go the other way, increment by 5 instead."),
    ],
)
def test_a_negative_step_is_refused_with_what_to_use(counter, service, message):
    with pytest.raises(InvalidStep, match=message):
        service("tickets", by=-5, actor=SHELL)
    assert stored_value("tickets") == 10
    assert not CounterEvent.objects.exists()


def test_a_step_outside_64_bits_is_refused(counter):
    with pytest.raises(OutOfRange, match="The step 9223372036854775808 is outside"):
        counter_increment("tickets", by=INT64_MAX + 1)
    assert stored_value("tickets") == 10


def test_set_and_reset(counter):
    assert counter_set("tickets", -42) == -42
    assert stored_value("tickets") == -42
    assert counter_reset("tickets") == 0
    assert stored_value("tickets") == 0


def test_change_updates_the_timestamp(counter):
    before = counter.updated_at
    counter_take("tickets")
    assert Counter.objects.get(name="tickets").updated_at > before


@pytest.mark.parametrize("service", [counter_take, counter_increment, counter_reset])
def test_unknown_counter_is_reported_by_name(counter, service):
    with pytest.raises(CounterNotFound, match="There is no counter named 'nope'"):
        service("nope")


# A step that is no integer (a bool, a float, text) is refused by the edges
# that read it (test_sessions, test_api, test_admin, test_commands): a
# service takes an int.
def test_a_step_of_zero_is_refused(counter):
    with pytest.raises(InvalidStep, match="The step must be a positive integer"):
        counter_increment("tickets", by=0)
    with pytest.raises(InvalidStep, match="The step must be a positive integer"):
        counter_decrement("tickets", by=0)
    assert stored_value("tickets") == 10


def test_result_outside_64_bits_is_refused_and_changes_nothing(counter):
    counter_set("tickets", INT64_MAX)
    with pytest.raises(OutOfRange, match="would leave the signed 64-bit range"):
        counter_take("tickets")
    assert stored_value("tickets") == INT64_MAX
    counter_set("tickets", INT64_MIN)
    with pytest.raises(OutOfRange, match="would leave the signed 64-bit range"):
        counter_decrement("tickets")
    assert stored_value("tickets") == INT64_MIN


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1])
def test_set_outside_64_bits_is_refused(counter, value):
    with pytest.raises(OutOfRange) as refused:
        counter_set("tickets", value)
    assert str(refused.value) == (
        f"The value {value} is outside the signed 64-bit range."
    )
    assert stored_value("tickets") == 10


def test_public_only_take_refuses_a_private_counter(counter):
    with pytest.raises(CounterNotPublic, match="'tickets' is not public"):
        counter_take("tickets", public_only=True)
    assert stored_value("tickets") == 10
    Counter.objects.filter(name="tickets").update(public=True)
    assert counter_take("tickets", public_only=True) == 11


def test_public_only_take_reports_an_unknown_counter(counter):
    with pytest.raises(CounterNotFound):
        counter_take("nope", public_only=True)


def test_selectors_read_counters(counter):
    Counter.objects.create(name="alpha", value=1)
    assert counter_get("tickets").value == 10
    names = [c.name for c in counter_list()]
    assert {"alpha", "tickets"} <= set(names)
    assert names == sorted(names)
    with pytest.raises(CounterNotFound):
        counter_get("nope")


# --- The audit trail (#4) ----------------------------------------------------

SHELL = Actor(Source.CLI, "os:operator")
VISITOR = Actor(Source.WEB, "session:abc")


def trail(name="tickets") -> list[tuple]:
    return list(
        CounterEvent.objects.filter(counter_name=name)
        .order_by("id")
        .values_list("action", "old_value", "new_value", "source", "actor")
    )


def test_every_change_with_a_command_actor_is_recorded(counter):
    counter_increment("tickets", by=5, actor=SHELL)
    counter_decrement("tickets", by=2, actor=SHELL)
    counter_set("tickets", 100, actor=SHELL)
    counter_reset("tickets", actor=SHELL)
    counter_create("fresh", public=True, actor=SHELL)
    assert counter_delete("tickets", actor=SHELL) == 0
    assert trail() == [
        ("increment", 10, 15, "cli", "os:operator"),
        ("decrement", 15, 13, "cli", "os:operator"),
        ("set", 13, 100, "cli", "os:operator"),
        ("reset", 100, 0, "cli", "os:operator"),
        ("delete", 0, None, "cli", "os:operator"),
    ]
    assert trail("fresh") == [("create", None, 0, "cli", "os:operator")]


def test_takes_are_recorded_only_where_the_counter_asks(counter):
    counter_take("tickets", actor=VISITOR)
    assert trail() == []
    Counter.objects.filter(name="tickets").update(audit_takes=True)
    number = counter_take("tickets", actor=VISITOR)
    assert trail() == [("take", number - 1, number, "web", "session:abc")]
    # "Who got number N?"
    assert CounterEvent.objects.get(new_value=number).actor == "session:abc"


def events_inserted_in_this_transaction() -> int:
    """Return the audit rows this transaction inserted, as PostgreSQL counts them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_inserted(%s::regclass)",
            [CounterEvent._meta.db_table],
        )
        return cursor.fetchone()[0]


@pytest.mark.postgresql  # PostgreSQL's per-transaction statistics
def test_an_unrecorded_take_does_no_extra_write(counter):
    with transaction.atomic():
        before = events_inserted_in_this_transaction()
        counter_take("tickets", actor=VISITOR)
        assert events_inserted_in_this_transaction() == before
        Counter.objects.filter(name="tickets").update(audit_takes=True)
        counter_take("tickets", actor=VISITOR)
        assert events_inserted_in_this_transaction() == before + 1


@pytest.mark.postgresql  # SELECT … FOR UPDATE, which SQLite has not
def test_a_take_locks_raises_and_records_with_no_extra_query(counter):
    Counter.objects.filter(name="tickets").update(audit_takes=True)
    with CaptureQueriesContext(connection) as queries:
        number = counter_take("tickets", actor=VISITOR)
    transaction_control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")
    statements = [
        q["sql"] for q in queries if not q["sql"].startswith(transaction_control)
    ]
    # The ORM's three: lock the row, raise it and read the new value back
    # (RETURNING, no second SELECT), record the take.
    assert [sql.split()[0] for sql in statements] == ["SELECT", "UPDATE", "INSERT"]
    assert "FOR UPDATE" in statements[0]
    assert "RETURNING" in statements[1]
    assert trail() == [("take", number - 1, number, "web", "session:abc")]


def test_a_failed_change_records_nothing(counter):
    counter_set("tickets", INT64_MAX, actor=SHELL)
    with pytest.raises(OutOfRange):
        counter_increment("tickets", actor=SHELL)
    assert [row[0] for row in trail()] == ["set"]


def test_create_checks_the_name(counter):
    with pytest.raises(CounterExists, match="A counter named 'tickets' already"):
        counter_create("tickets")
    with pytest.raises(InvalidName, match="'two words' is not a valid counter name"):
        counter_create("two words")
    with pytest.raises(InvalidName, match="at most 100 characters"):
        counter_create("x" * 101)
    assert not CounterEvent.objects.exists()


def test_global_counter_cannot_be_deleted(counter):
    Counter.objects.get_or_create(name="global")
    with pytest.raises(CounterProtected, match="'global' counter cannot be deleted"):
        counter_delete("global", actor=SHELL)
    assert Counter.objects.filter(name="global").exists()


def test_history_outlives_the_counter(counter):
    counter_increment("tickets", actor=SHELL)
    counter_delete("tickets", actor=SHELL)
    assert [e.action for e in counter_history("tickets")] == ["delete", "increment"]
    assert [e.action for e in counter_history("tickets", limit=1)] == ["delete"]
    with pytest.raises(CounterNotFound):
        counter_history("never-existed")


def test_a_very_long_actor_name_is_cut_not_fatal(counter):
    long_name = Actor(Source.ADMIN, "user:" + "x" * 400)
    Counter.objects.filter(name="tickets").update(audit_takes=True)
    assert counter_take("tickets", actor=long_name) == 11
    assert counter_increment("tickets", actor=long_name) == 12
    actors = CounterEvent.objects.values_list("actor", flat=True)
    assert {len(actor) for actor in actors} == {255}


def test_option_changes_are_recorded_under_the_lock(counter):
    before = Counter.objects.get(name="tickets").updated_at
    changed = counter_configure("tickets", public=True, audit_takes=True, actor=SHELL)
    assert changed == [Action.PUBLIC, Action.AUDIT_TAKES]
    after = Counter.objects.get(name="tickets")
    assert (after.public, after.audit_takes, after.value) == (True, True, 10)
    assert after.updated_at > before
    assert trail() == [
        ("public", 0, 1, "cli", "os:operator"),
        ("audit", 0, 1, "cli", "os:operator"),
    ]
    # Saving the same options again is no change: nothing recorded or bumped.
    assert counter_configure("tickets", public=True, audit_takes=True) == []
    assert Counter.objects.get(name="tickets").updated_at == after.updated_at
    assert len(trail()) == 2


def test_configure_an_unknown_counter_is_refused(counter):
    with pytest.raises(CounterNotFound, match="There is no counter named 'nope'"):
        counter_configure("nope", public=True, audit_takes=False, actor=SHELL)
    assert not CounterEvent.objects.exists()


@pytest.mark.parametrize("name", ["a\x00b", "caf\u00e9", "\udcff", "", "a b"])
def test_a_name_no_counter_can_have_is_refused_before_the_database(counter, name):
    for lookup in (counter_get, counter_take, counter_reset, counter_history):
        with pytest.raises(InvalidName, match="is not a valid counter name"):
            lookup(name)
