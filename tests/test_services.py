import pytest

from counters.exceptions import (
    CounterNotFound,
    CounterNotPublic,
    InvalidStep,
    InvalidValue,
    OutOfRange,
)
from counters.models import INT64_MAX, INT64_MIN, Counter
from counters.selectors import counter_get, counter_list
from counters.services import (
    counter_decrement,
    counter_increment,
    counter_reset,
    counter_set,
    counter_take,
)

# Each test runs inside a transaction (db) and in autocommit
# (transactional_db): the services must behave the same in both.
pytestmark = pytest.mark.parametrize(
    "database", ["db", "transactional_db"], indirect=False
)


@pytest.fixture
def counter(request, database):
    request.getfixturevalue(database)
    return Counter.objects.create(name="tickets", value=10)


def value_of(name: str) -> int:
    return Counter.objects.get(name=name).value


def test_take_returns_consecutive_numbers(counter):
    assert [counter_take("tickets") for _ in range(3)] == [11, 12, 13]
    assert value_of("tickets") == 13


def test_increment_and_decrement_by_a_step(counter):
    assert counter_increment("tickets", by=5) == 15
    assert counter_increment("tickets", by=-3) == 12
    assert counter_decrement("tickets", by=2) == 10
    assert counter_decrement("tickets") == 9
    assert value_of("tickets") == 9


def test_set_and_reset(counter):
    assert counter_set("tickets", -42) == -42
    assert value_of("tickets") == -42
    assert counter_reset("tickets") == 0
    assert value_of("tickets") == 0


def test_change_updates_the_timestamp(counter):
    before = counter.updated_at
    counter_take("tickets")
    assert Counter.objects.get(name="tickets").updated_at > before


@pytest.mark.parametrize("service", [counter_take, counter_increment, counter_reset])
def test_unknown_counter_is_reported_by_name(counter, service):
    with pytest.raises(CounterNotFound, match="There is no counter named 'nope'"):
        service("nope")


@pytest.mark.parametrize("step", [0, 1.5, "1", True, None])
def test_step_must_be_a_non_zero_integer(counter, step):
    with pytest.raises(InvalidStep, match="The step must be a non-zero integer"):
        counter_increment("tickets", by=step)
    with pytest.raises(InvalidStep, match="The step must be a non-zero integer"):
        counter_decrement("tickets", by=step)
    assert value_of("tickets") == 10


def test_result_outside_64_bits_is_refused_and_changes_nothing(counter):
    counter_set("tickets", INT64_MAX)
    with pytest.raises(OutOfRange, match="would leave the signed 64-bit range"):
        counter_take("tickets")
    assert value_of("tickets") == INT64_MAX
    counter_set("tickets", INT64_MIN)
    with pytest.raises(OutOfRange, match="would leave the signed 64-bit range"):
        counter_decrement("tickets")
    assert value_of("tickets") == INT64_MIN


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1])
def test_set_outside_64_bits_is_refused(counter, value):
    with pytest.raises(OutOfRange, match="outside the signed 64-bit range"):
        counter_set("tickets", value)
    assert value_of("tickets") == 10


@pytest.mark.parametrize("value", ["5", 5.0, True, None])
def test_set_needs_an_integer(counter, value):
    with pytest.raises(InvalidValue, match="The value must be an integer"):
        counter_set("tickets", value)
    assert value_of("tickets") == 10


def test_public_only_take_refuses_a_private_counter(counter):
    with pytest.raises(CounterNotPublic, match="'tickets' is not public"):
        counter_take("tickets", public_only=True)
    assert value_of("tickets") == 10
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
