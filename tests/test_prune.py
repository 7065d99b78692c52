"""
Pruning the audit trail (#23): ``manage.py counter prune-history``, its
batches, its record, and the takes that go on while it runs.
"""

import io
import os
import pty
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from counters.actors import Actor
from counters.exceptions import InvalidLimit, InvalidValue
from counters.models import Action, Counter, CounterEvent, Source
from counters.services import counter_history_prune, counter_take

from .support import examples, row_lock_held, stored_value
from .test_commands import SHELL_ACTOR, Terminal, counter, fails, manage, state
from .test_generated import assert_sentence, generated, number_text
from .trail import CUT, OLD, entries_at

pytestmark = pytest.mark.django_db

LATER = datetime(2021, 6, 1, tzinfo=UTC)
OPERATOR = Actor(Source.CLI, "os:operator")
VISITOR = Actor(Source.API, "ip:127.0.0.1")


def left(name: str | None = None) -> list[tuple]:
    """Return the entries left, oldest first: counter, action and old value."""
    entries = CounterEvent.objects.order_by("id")
    if name is not None:
        entries = entries.filter(counter_name=name)
    return list(entries.values_list("counter_name", "action", "old_value"))


def prune_records() -> list[tuple]:
    return list(
        CounterEvent.objects.filter(action=Action.PRUNE)
        .order_by("id")
        .values_list("counter_name", "old_value", "new_value", "source", "actor")
    )


@pytest.fixture
def trail() -> None:
    """Give 'tickets' 5 old and 2 newer entries, 'other' 3 old and 1 newer."""
    Counter.objects.create(name="tickets")
    Counter.objects.create(name="other")
    entries_at("tickets", 5, OLD)
    entries_at("other", 3, OLD)
    entries_at("tickets", 2, LATER)
    entries_at("other", 1, LATER)


@pytest.fixture
def no_terminal(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))


# --- What is removed, and the record of it -----------------------------------


def test_prune_before_a_date_removes_every_counters_older_entries(trail):
    assert counter("prune-history", "--before", "2021-01-01", "--yes") == (
        "Removed 8 audit entries older than 2021-01-01T00:00:00+00:00 of every "
        "counter.\n"
    )
    assert left() == [
        ("tickets", "take", 0),
        ("tickets", "take", 1),
        ("other", "take", 0),
        ("*", "prune", 8),
    ]
    assert prune_records() == [("*", 8, None, "cli", SHELL_ACTOR)]


def test_prune_of_one_counter_keeps_the_others_entries(trail):
    assert counter("prune-history", "tickets", "--before", "2021-01-01", "--yes") == (
        "Removed 5 audit entries older than 2021-01-01T00:00:00+00:00 of counter "
        "'tickets'.\n"
    )
    assert left("tickets") == [
        ("tickets", "take", 0),
        ("tickets", "take", 1),
        ("tickets", "prune", 5),
    ]
    assert len(left("other")) == 4
    assert prune_records() == [("tickets", 5, None, "cli", SHELL_ACTOR)]


def test_prune_by_days_counts_back_from_now(trail):
    recent = timezone.now() - timedelta(days=1)
    entries_at("tickets", 1, recent)
    first = timezone.now()
    output = counter("prune-history", "--days", "2", "--yes")
    last = timezone.now()
    found = re.fullmatch(
        r"Removed 11 audit entries older than (\S+) of every counter\.\n", output
    )
    assert found, output
    cutoff = datetime.fromisoformat(found[1])
    # The cut-off is printed to the second.
    second = timedelta(seconds=1)
    assert first - timedelta(days=2) - second <= cutoff <= last - timedelta(days=2)
    assert left() == [("tickets", "take", 0), ("*", "prune", 11)]


def test_an_entry_at_the_cut_off_is_kept():
    Counter.objects.create(name="tickets")
    entries_at("tickets", 1, CUT)
    entries_at("tickets", 1, CUT - timedelta(microseconds=1))
    assert "Removed 1 audit entry " in counter(
        "prune-history", "tickets", "--before", "2021-01-01", "--yes"
    )
    assert left() == [("tickets", "take", 0), ("tickets", "prune", 1)]


def test_a_deleted_counters_history_can_be_pruned(trail):
    Counter.objects.filter(name="tickets").delete()
    assert "Removed 5 audit entries" in counter(
        "prune-history", "tickets", "--before", "2021-01-01", "--yes"
    )


def test_a_prune_of_nothing_is_recorded_too():
    Counter.objects.create(name="tickets")
    assert counter("prune-history", "tickets", "--days", "1", "--yes").startswith(
        "Removed 0 audit entries older than "
    )
    assert prune_records() == [("tickets", 0, None, "cli", SHELL_ACTOR)]


def test_records_of_earlier_prunes_are_never_removed(trail):
    counter("prune-history", "--before", "2021-01-01", "--yes")
    # Even once older than the cut-off, the record of a prune stays.
    CounterEvent.objects.filter(action=Action.PRUNE).update(created_at=OLD)
    counter("prune-history", "--before", "2021-01-01", "--yes")
    assert [count for _, count, *_ in prune_records()] == [8, 0]


def test_a_prune_is_logged_once_committed(
    trail, caplog, django_capture_on_commit_callbacks
):
    with caplog.at_level("INFO", logger="counters.services"):
        with django_capture_on_commit_callbacks(execute=True):
            counter_history_prune("tickets", before=CUT, actor=OPERATOR)
    assert [r.getMessage() for r in caplog.records] == [
        "counter tickets prune: 5 entries older than 2021-01-01T00:00:00+00:00 "
        "removed by os:operator via cli"
    ]


# --- Batches ------------------------------------------------------------------


@pytest.mark.parametrize("count, batches", [(10, [3, 3, 3, 1]), (9, [3, 3, 3])])
def test_batch_size_bounds_each_delete(count, batches):
    Counter.objects.create(name="tickets")
    entries_at("tickets", count, OLD)
    with CaptureQueriesContext(connection) as queries:
        output = counter(
            "prune-history", "--before", "2021-01-01", "--yes",
            "--batch-size", "3", "-v", "2",
        )  # fmt: skip
    assert output.splitlines() == [
        *(f"Batch {n}: removed {size} audit entries." if size > 1 else
          f"Batch {n}: removed 1 audit entry."
          for n, size in enumerate(batches, start=1)),
        f"Removed {count} audit entries older than 2021-01-01T00:00:00+00:00 of "
        "every counter.",
    ]  # fmt: skip
    deletes = [q["sql"] for q in queries if q["sql"].upper().startswith("DELETE")]
    assert len(deletes) == len(batches)
    # A batch is an id range, not a list of ids.
    assert all(" IN (" not in sql.upper() for sql in deletes)


def test_batches_of_one_counter_skip_the_others_entries():
    Counter.objects.create(name="tickets")
    for _ in range(4):
        entries_at("tickets", 1, OLD)
        entries_at("other", 2, OLD)
    sizes = []
    removed = counter_history_prune(
        "tickets", before=CUT, actor=OPERATOR, batch_size=3, progress=sizes.append
    )
    assert (removed, sizes) == (4, [3, 1])
    assert len(left("other")) == 8


def test_verbosity_one_prints_the_summary_alone(trail):
    assert counter(
        "prune-history", "--before", "2021-01-01", "--yes", "--batch-size", "2"
    ).startswith("Removed 8 audit entries")


@pytest.mark.django_db(transaction=True)
def test_each_batch_is_committed_before_the_next():
    Counter.objects.create(name="tickets")
    entries_at("tickets", 10, OLD)
    onlooker = ThreadPoolExecutor(max_workers=1)

    def old_entries() -> int:
        return CounterEvent.objects.filter(created_at__lt=CUT).count()

    seen = []
    try:
        removed = counter_history_prune(
            "tickets",
            before=CUT,
            actor=OPERATOR,
            batch_size=3,
            # Another connection sees each batch gone as soon as it is done.
            progress=lambda _: seen.append(onlooker.submit(old_entries).result()),
        )
    finally:
        # A lambda: the connection is looked up in the worker's own thread.
        onlooker.submit(lambda: connection.close()).result()
        onlooker.shutdown()
    assert (removed, seen) == (10, [7, 4, 1, 0])


# --- Refusals: one line, nothing removed -------------------------------------


def test_without_yes_and_without_terminal_nothing_is_removed(trail, no_terminal):
    assert fails("prune-history", "--days", "1") == (
        "Nothing was removed: there is no terminal to confirm on, so pass --yes."
    )


PROMPT = (
    "Remove 5 audit entries older than 2021-01-01T00:00:00+00:00 of counter "
    "'tickets'? [y/N] "
)


def test_on_a_terminal_it_asks_naming_how_many(trail, monkeypatch):
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert counter("prune-history", "tickets", "--before", "2021-01-01") == (
        PROMPT + "Removed 5 audit entries older than 2021-01-01T00:00:00+00:00 "
        "of counter 'tickets'.\n"
    )
    assert len(left("tickets")) == 3


@pytest.mark.parametrize("answer", ["n\n", "\n", ""])
def test_on_a_terminal_anything_but_yes_removes_nothing(trail, monkeypatch, answer):
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    before = state()
    output = counter("prune-history", "tickets", "--before", "2021-01-01")
    assert output.startswith(PROMPT) and output.endswith("Nothing was removed.\n")
    assert state() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope", "--days", "1"], "There is no counter named 'nope'."),
        (
            ["no spaces", "--days", "1"],
            "'no spaces' is not a valid counter name: use letters, digits, "
            "hyphens and underscores.",
        ),
        (["--days", "0"], "The number of days must be positive, not 0."),
        (["--days", "-3"], "The number of days must be positive, not -3."),
        (["--days", "1000000"], "1000000 days ago is before the year 1."),
        (["--days", "1" + "0" * 30], f"1{'0' * 30} days ago is before the year 1."),
        (
            ["--before", "2999-01-01"],
            "The cut-off 2999-01-01T00:00:00+00:00 is in the future: give a "
            "moment that has passed.",
        ),
        (
            ["--days", "1", "--batch-size", "0"],
            "The batch size must be a positive integer, not 0.",
        ),
        (
            ["--before", "2021-13-01"],
            "Error: argument --before: invalid date value: '2021-13-01'",
        ),
        (["--before", "20210101"], "Error: argument --before: invalid date value"),
        (["--before", "2021-1-01"], "Error: argument --before: invalid date value"),
        (["--days", "x"], "Error: argument --days: invalid int value: 'x'"),
        (
            ["--days", "1", "--before", "2021-01-01"],
            "Error: argument --before: not allowed with argument --days",
        ),
        ([], "Error: one of the arguments --before --days is required"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_arguments_remove_nothing(trail, no_terminal, args, message):
    # With --yes and without: the checks come before any question.
    assert fails("prune-history", *args, "--yes").startswith(message)
    assert fails("prune-history", *args).startswith(message)


WORDS = ["--before", "--days", "--yes", "--batch-size", "-v", "2", "tickets", "nope"]
WORDS += ["2021-01-01", "2999-01-01", "2021-02-30", "0001-01-01", "0", "-3", "1"]


@settings(generated, max_examples=examples(300))
@given(
    args=st.lists(
        st.one_of(st.sampled_from(WORDS), number_text, st.text(max_size=10)),
        max_size=6,
    )
)
def test_any_prune_command_line_gets_a_clear_answer(trail, monkeypatch, args):
    # Without a terminal: a prune without --yes must be refused, not asked.
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    out, err = io.StringIO(), io.StringIO()
    before = state()
    try:
        call_command("counter", "prune-history", *args, stdout=out, stderr=err)
    except CommandError as exc:
        message = str(exc)
        assert message and "\n" not in message
        if not message.startswith("Error: "):  # argparse's own usage errors
            assert_sentence(message)
        assert state() == before
    except SystemExit as exc:
        assert exc.code == 0  # --help
        assert state() == before
    else:
        assert err.getvalue() == ""
        assert out.getvalue().splitlines()[-1].startswith("Removed ")


def test_the_service_checks_its_arguments_first(trail):
    before = state()
    with pytest.raises(InvalidLimit, match="not 0"):
        counter_history_prune(None, before=CUT, actor=OPERATOR, batch_size=0)
    with pytest.raises(InvalidValue, match="with a time zone"):
        counter_history_prune(None, before=datetime(2021, 1, 1), actor=OPERATOR)
    assert state() == before


# --- From a shell -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_shell_prune_prints_the_summary_and_logs_to_stderr(trail):
    result = manage("prune-history", "--before", "2021-01-01", "--yes")
    assert (result.returncode, result.stdout) == (
        0,
        "Removed 8 audit entries older than 2021-01-01T00:00:00+00:00 of every "
        "counter.\n",
    )
    [log_line] = result.stderr.splitlines()
    assert log_line.endswith(
        "INFO counters.services counter * prune: 8 entries older than "
        f"2021-01-01T00:00:00+00:00 removed by {SHELL_ACTOR} via cli"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "args, code, last_line",
    [
        (
            ["--days", "1"],
            1,
            "CommandError: Nothing was removed: there is no terminal to confirm "
            "on, so pass --yes.",
        ),
        (
            ["--before", "2021-02-30", "--yes"],
            2,
            "manage.py counter prune-history: error: argument --before: invalid "
            "date value: '2021-02-30'",
        ),
    ],
    ids=["no terminal", "bad date"],
)
def test_shell_refusals_are_one_line(trail, args, code, last_line):
    before = state()
    result = manage("prune-history", *args)
    assert result.returncode == code
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == last_line
    if code == 1:
        assert result.stderr.splitlines() == [last_line]
    assert state() == before


@pytest.mark.django_db(transaction=True)
def test_shell_prune_on_a_real_terminal_asks_first(trail):
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"y\n")
        result = manage("prune-history", "tickets", "--before", "2021-01-01",
                        stdin=terminal)  # fmt: skip
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        PROMPT + "Removed 5 audit entries older than 2021-01-01T00:00:00+00:00 "
        "of counter 'tickets'.\n"
    )


# --- Beside takes: no lock held, no number lost -------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_prune_waits_for_no_counters_row_lock(postgres):
    Counter.objects.create(name="tickets")
    entries_at("tickets", 7, OLD)
    with connection.cursor() as cursor:
        # Were the prune to wait for the row, it would fail instead of hanging.
        cursor.execute("SET lock_timeout = '5s'")
    try:
        with row_lock_held(postgres, "tickets"):
            removed = counter_history_prune(
                "tickets", before=CUT, actor=OPERATOR, batch_size=2
            )
            with connection.cursor() as cursor:
                cursor.execute("SHOW lock_timeout")
                assert cursor.fetchone() == ("5s",)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert removed == 7


TAKERS = 8
TAKES = 25
OLD_ENTRIES = 600
BATCH = 40


@pytest.mark.django_db(transaction=True)
def test_takes_go_on_while_a_prune_runs():
    Counter.objects.create(name="race", public=True, audit_takes=True)
    entries_at("race", OLD_ENTRIES, OLD)
    start = threading.Barrier(TAKERS + 1, timeout=30)
    # Between two batches, a take from another connection goes through.
    between = ThreadPoolExecutor(max_workers=1)
    taken_between = []

    def take(_):
        start.wait()
        try:
            return [counter_take("race", actor=VISITOR) for _ in range(TAKES)]
        finally:
            connection.close()

    def take_between(_count: int) -> None:
        number = between.submit(counter_take, "race", actor=VISITOR).result()
        taken_between.append(number)

    def prune():
        start.wait()
        try:
            return counter_history_prune(
                "race",
                before=CUT,
                actor=OPERATOR,
                batch_size=BATCH,
                progress=take_between,
            )
        finally:
            connection.close()

    try:
        with ThreadPoolExecutor(max_workers=TAKERS + 1) as pool:
            pruned = pool.submit(prune)
            chunks = list(pool.map(take, range(TAKERS)))
            removed = pruned.result()
    finally:
        between.submit(lambda: connection.close()).result()
        between.shutdown()

    assert removed == OLD_ENTRIES
    assert len(taken_between) == OLD_ENTRIES // BATCH
    numbers = sorted([n for chunk in chunks for n in chunk] + taken_between)
    total = TAKERS * TAKES + len(taken_between)
    assert numbers == list(range(1, total + 1))
    assert stored_value("race") == total
    # Every take's entry is kept; every old one is gone.
    takes = CounterEvent.objects.filter(counter_name="race", action=Action.TAKE)
    assert sorted(takes.values_list("new_value", flat=True)) == numbers
    assert not takes.filter(created_at__lt=CUT).exists()
