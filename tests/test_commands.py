"""The ``counter`` management command, as operators and their scripts use it."""

import getpass
import io
import json
import os
import pty
import subprocess
import sys
from datetime import datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from counterproject.testing.servers import project_command
from counters.models import GLOBAL, INT64_MAX, INT64_MIN, Counter, CounterEvent

from .support import database_env, manage_on_test_database, stored_value

pytestmark = pytest.mark.django_db

SHELL_ACTOR = f"os:{getpass.getuser()}"


class Terminal(io.StringIO):
    """Typed answers on standard input, as from a terminal."""

    def isatty(self) -> bool:
        return True


def counter(*args: str) -> str:
    """Run ``manage.py counter *args`` in process; return stdout, check stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command("counter", *args, stdout=out, stderr=err)
    assert err.getvalue() == ""
    return out.getvalue()


def state() -> tuple[list, list]:
    """Return every counter and audit entry, to show that nothing changed."""
    return (
        list(Counter.objects.order_by("name").values_list()),
        list(CounterEvent.objects.order_by("id").values_list()),
    )


def fails(*args: str) -> str:
    """Run the command, expecting a CommandError that changes nothing."""
    before = state()
    with pytest.raises(CommandError) as excinfo:
        counter(*args)
    assert state() == before
    return str(excinfo.value)


def audit(name: str = "tickets") -> list[tuple]:
    """Return the counter's audit entries, oldest first."""
    return list(
        CounterEvent.objects.filter(counter_name=name)
        .order_by("id")
        .values_list("action", "old_value", "new_value", "source", "actor")
    )


def when(moment: datetime) -> str:
    return timezone.localtime(moment).isoformat(timespec="seconds")


@pytest.fixture
def tickets() -> Counter:
    return Counter.objects.create(name="tickets", value=10)


@pytest.fixture
def no_terminal(monkeypatch) -> None:
    """Give the command a standard input that is not a terminal, like cron."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))


# --- Changes --------------------------------------------------------------


def test_create_prints_zero_and_records_the_shell_user():
    assert counter("create", "tickets") == "0\n"
    created = Counter.objects.get(name="tickets")
    assert (created.value, created.public) == (0, False)
    assert audit() == [("create", None, 0, "cli", SHELL_ACTOR)]
    assert SHELL_ACTOR.startswith("os:")


def test_create_public_counter():
    assert counter("create", "tickets", "--public") == "0\n"
    assert Counter.objects.get(name="tickets").public is True


def test_incr_prints_the_new_value_alone(tickets):
    assert counter("incr", "tickets") == "11\n"
    assert counter("incr", "tickets", "--by", "5") == "16\n"
    assert counter("incr", "tickets", "--by", "+4") == "20\n"
    assert stored_value("tickets") == 20
    assert audit() == [
        ("increment", 10, 11, "cli", SHELL_ACTOR),
        ("increment", 11, 16, "cli", SHELL_ACTOR),
        ("increment", 16, 20, "cli", SHELL_ACTOR),
    ]


@pytest.mark.parametrize(
    "action, instead",
    [("incr", "decrement by 5 instead"), ("decr", "increment by 5 instead")],
)
def test_a_negative_step_is_refused_and_names_the_other_action(
    tickets, action, instead
):
    # Before #12, "decr --by -5" added 5 and was recorded as a decrement.
    assert fails(action, "tickets", "--by", "-5") == (
        f"The step must be a positive integer, not -5: to go the other way, {instead}."
    )


def test_decr_prints_the_new_value_alone(tickets):
    assert counter("decr", "tickets") == "9\n"
    assert counter("decr", "tickets", "--by", "20") == "-11\n"
    assert stored_value("tickets") == -11
    assert audit() == [
        ("decrement", 10, 9, "cli", SHELL_ACTOR),
        ("decrement", 9, -11, "cli", SHELL_ACTOR),
    ]


@pytest.mark.parametrize("value", [-42, 0, INT64_MIN, INT64_MAX])
def test_set_prints_the_value(tickets, value):
    assert counter("set", "tickets", str(value)) == f"{value}\n"
    assert stored_value("tickets") == value
    assert audit() == [("set", 10, value, "cli", SHELL_ACTOR)]


def test_reset_prints_zero(tickets):
    assert counter("reset", "tickets") == "0\n"
    assert stored_value("tickets") == 0
    assert audit() == [("reset", 10, 0, "cli", SHELL_ACTOR)]


def test_delete_with_yes_confirms_and_keeps_the_history(tickets):
    assert counter("delete", "tickets", "--yes") == (
        "Deleted counter 'tickets' (last value 10).\n"
    )
    assert not Counter.objects.filter(name="tickets").exists()
    assert audit() == [("delete", 10, None, "cli", SHELL_ACTOR)]


PROMPT = "Delete counter 'tickets' (value 10)? [y/N] "


def typed(answer: str) -> str:
    """Return what ends the prompt's line: the typed newline, or one written."""
    return "" if answer.endswith("\n") else "\n"


@pytest.mark.parametrize("answer", ["y\n", "yes\n", " Y \n", "YES"])
def test_delete_on_a_terminal_asks_and_deletes_on_yes(tickets, monkeypatch, answer):
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    assert counter("delete", "tickets") == (
        PROMPT + typed(answer) + "Deleted counter 'tickets' (last value 10).\n"
    )
    assert not Counter.objects.filter(name="tickets").exists()
    assert audit() == [("delete", 10, None, "cli", SHELL_ACTOR)]


@pytest.mark.parametrize("answer", ["n\n", "\n", "", "yep\n", "no\n"])
def test_delete_on_a_terminal_keeps_the_counter_unless_told_yes(
    tickets, monkeypatch, answer
):
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    before = state()
    assert counter("delete", "tickets") == (
        PROMPT + typed(answer) + "Counter 'tickets' was not deleted.\n"
    )
    assert state() == before


def test_delete_interrupted_at_the_prompt_keeps_the_counter(tickets, monkeypatch):
    class Interrupted(Terminal):
        def readline(self, *args):
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", Interrupted())
    before = state()
    assert counter("delete", "tickets") == (
        PROMPT + "\nCounter 'tickets' was not deleted.\n"
    )
    assert state() == before


# --- Reads ------------------------------------------------------------------


def test_show_prints_key_value_lines(tickets):
    assert counter("show", "tickets") == (
        "name: tickets\n"
        "value: 10\n"
        "public: no\n"
        f"updated_at: {when(tickets.updated_at)}\n"
    )


def test_show_json(tickets):
    data = json.loads(counter("show", "tickets", "--json"))
    assert data == {
        "name": "tickets",
        "value": 10,
        "public": False,
        "updated_at": tickets.updated_at.isoformat(),
    }
    assert datetime.fromisoformat(data["updated_at"]) == tickets.updated_at


def test_list_prints_an_aligned_table(global_counter, tickets):
    Counter.objects.filter(name="tickets").update(value=-1234)
    tickets.refresh_from_db()
    assert counter("list").splitlines() == [
        "NAME     VALUE  PUBLIC  LAST CHANGE",
        f"global       0  yes     {when(global_counter.updated_at)}",
        f"tickets  -1234  no      {when(tickets.updated_at)}",
    ]


def test_list_json_is_an_array_of_counters(global_counter, tickets):
    assert json.loads(counter("list", "--json")) == [
        {
            "name": GLOBAL,
            "value": 0,
            "public": True,
            "updated_at": global_counter.updated_at.isoformat(),
        },
        {
            "name": "tickets",
            "value": 10,
            "public": False,
            "updated_at": tickets.updated_at.isoformat(),
        },
    ]


def test_list_without_counters():
    Counter.objects.all().delete()
    assert counter("list") == "There are no counters.\n"
    assert json.loads(counter("list", "--json")) == []


def changed_tickets() -> list[CounterEvent]:
    """Create, change and return the audit entries of 'tickets', newest first."""
    counter("create", "tickets")
    counter("incr", "tickets", "--by", "5")
    counter("set", "tickets", "-3")
    counter("reset", "tickets")
    return list(CounterEvent.objects.filter(counter_name="tickets"))


def test_history_prints_one_line_per_entry_newest_first():
    events = changed_tickets()
    lines = counter("history", "tickets").splitlines()
    assert [line.split() for line in lines] == [
        [when(events[0].created_at), "reset", "-3", "→", "0", "cli", SHELL_ACTOR],
        [when(events[1].created_at), "set", "5", "→", "-3", "cli", SHELL_ACTOR],
        [when(events[2].created_at), "increment", "0", "→", "5", "cli", SHELL_ACTOR],
        [when(events[3].created_at), "create", "-", "→", "0", "cli", SHELL_ACTOR],
    ]
    # The columns line up.
    assert len({line.index("→") for line in lines}) == 1


def test_history_json_is_newest_first_and_limited():
    events = changed_tickets()
    data = json.loads(counter("history", "tickets", "--json", "--limit", "2"))
    assert data == [
        {
            "counter": "tickets",
            "action": "reset",
            "old_value": -3,
            "new_value": 0,
            "source": "cli",
            "actor": SHELL_ACTOR,
            "at": events[0].created_at.isoformat(),
        },
        {
            "counter": "tickets",
            "action": "set",
            "old_value": 5,
            "new_value": -3,
            "source": "cli",
            "actor": SHELL_ACTOR,
            "at": events[1].created_at.isoformat(),
        },
    ]
    assert datetime.fromisoformat(data[0]["at"]) == events[0].created_at


def test_history_defaults_to_twenty_entries(tickets):
    for _ in range(25):
        counter("incr", "tickets")
    data = json.loads(counter("history", "tickets", "--json"))
    assert [entry["new_value"] for entry in data] == list(range(35, 15, -1))


def test_history_outlives_a_deleted_counter(tickets):
    counter("delete", "tickets", "--yes")
    assert [
        e["action"] for e in json.loads(counter("history", "tickets", "--json"))
    ] == ["delete"]


def test_history_of_a_counter_without_changes(tickets):
    assert (
        counter("history", "tickets") == "Counter 'tickets' has no recorded changes.\n"
    )
    assert json.loads(counter("history", "tickets", "--json")) == []


# --- Errors: one message, nothing changed -----------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["show", "nope"],
        ["incr", "nope"],
        ["decr", "nope", "--by", "2"],
        ["set", "nope", "5"],
        ["reset", "nope"],
        ["delete", "nope", "--yes"],
        ["delete", "nope"],
        ["history", "nope"],
    ],
    ids=" ".join,
)
def test_unknown_counter_is_named(tickets, no_terminal, args):
    assert fails(*args) == "There is no counter named 'nope'."


@pytest.mark.parametrize(
    "args, message",
    [
        (["incr", "tickets", "--by", "abc"], "argument --by: invalid int value: 'abc'"),
        (["incr", "tickets", "--by", " 5"], "argument --by: invalid int value: ' 5'"),
        (["incr", "tickets", "--by", "1_0"], "argument --by: invalid int value: '1_0'"),
        (["set", "tickets", "\u0661"], "argument VALUE: invalid int value: '\u0661'"),
        (["decr", "tickets", "--by", "1.5"], "argument --by: invalid int value: '1.5'"),
        (["set", "tickets", "abc"], "argument VALUE: invalid int value: 'abc'"),
        (
            ["history", "tickets", "--limit", "x"],
            "argument --limit: invalid int value: 'x'",
        ),
        (["incr", "tickets", "--by"], "argument --by: expected one argument"),
        (["set", "tickets"], "the following arguments are required: VALUE"),
        (["frobnicate", "tickets"], "argument ACTION: invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: ACTION"),
    ],
)
def test_bad_arguments_are_named(tickets, args, message):
    assert fails(*args).startswith(f"Error: {message}")


@pytest.mark.parametrize("action", ["incr", "decr"])
def test_zero_step_is_refused(tickets, action):
    assert (
        fails(action, "tickets", "--by", "0")
        == "The step must be a positive integer, not 0."
    )


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 10**30])
def test_set_outside_the_64_bit_range_is_refused(tickets, value):
    assert fails("set", "tickets", str(value)) == (
        f"The value {value} is outside the signed 64-bit range."
    )


def test_incr_past_the_largest_value_is_refused(tickets):
    Counter.objects.filter(name="tickets").update(value=INT64_MAX - 1)
    assert fails("incr", "tickets", "--by", "2") == (
        f"Counter 'tickets' is at {INT64_MAX - 1}; adding 2 would leave the signed "
        "64-bit range."
    )
    assert counter("incr", "tickets") == f"{INT64_MAX}\n"
    assert fails("incr", "tickets").startswith(f"Counter 'tickets' is at {INT64_MAX};")


def test_decr_past_the_smallest_value_is_refused(tickets):
    Counter.objects.filter(name="tickets").update(value=INT64_MIN)
    assert fails("decr", "tickets") == (
        f"Counter 'tickets' is at {INT64_MIN}; adding -1 would leave the signed "
        "64-bit range."
    )


def test_create_existing_counter_is_refused(tickets):
    assert fails("create", "tickets", "--public") == (
        "A counter named 'tickets' already exists."
    )


@pytest.mark.parametrize(
    "name, message",
    [
        (
            "no spaces",
            "'no spaces' is not a valid counter name: use letters, digits, "
            "hyphens and underscores.",
        ),
        ("x" * 101, "A counter name has at most 100 characters."),
    ],
    ids=["spaces", "too long"],
)
def test_create_invalid_name_is_refused(name, message):
    assert fails("create", name) == message


@pytest.mark.parametrize("args", [["--yes"], []], ids=["--yes", "asked"])
def test_delete_global_is_refused(global_counter, monkeypatch, args):
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert fails("delete", GLOBAL, *args) == "The 'global' counter cannot be deleted."
    assert Counter.objects.filter(name=GLOBAL).exists()


def test_delete_without_yes_and_without_terminal_is_refused(tickets, no_terminal):
    assert fails("delete", "tickets") == (
        "Counter 'tickets' was not deleted: there is no terminal to confirm on, "
        "so pass --yes."
    )


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_history_limit_must_be_positive(tickets, limit):
    assert fails("history", "tickets", "--limit", limit) == (
        f"The limit must be a positive integer, not {limit}."
    )


def test_history_limit_must_fit_in_64_bits(tickets):
    limit = str(INT64_MAX + 1)
    assert fails("history", "tickets", "--limit", limit) == (
        f"The limit {limit} is outside the signed 64-bit range."
    )


# --- From a shell: exit codes, one line on stderr, no traceback -------------


def manage(*args: str, **options) -> subprocess.CompletedProcess:
    """Run ``manage.py counter *args`` as an operator does, on the test database."""
    return manage_on_test_database("counter", *args, timeout=60, **options)


@pytest.mark.django_db(transaction=True)
def test_shell_incr_prints_the_new_value_alone(tickets):
    result = manage("incr", "tickets", "--by", "3")
    assert (result.returncode, result.stdout) == (0, "13\n")
    # The change's one log line goes to stderr, keeping stdout for the value.
    [log_line] = result.stderr.splitlines()
    assert log_line.endswith(
        f"INFO counters.services counter tickets increment: 10 -> 13 by "
        f"{SHELL_ACTOR} via cli"
    )
    assert stored_value("tickets") == 13
    assert audit() == [("increment", 10, 13, "cli", SHELL_ACTOR)]


@pytest.mark.django_db(transaction=True)
def test_shell_unknown_counter_fails_with_one_line(tickets):
    before = state()
    result = manage("incr", "nope")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "CommandError: There is no counter named 'nope'."
    ]
    assert state() == before


@pytest.mark.parametrize(
    "database, reason",
    [
        ("unmigrated", "no such table: counters_counter"),
        ("down", "connection to server at"),
    ],
)
def test_shell_without_a_database_fails_with_one_line(tmp_path, database, reason):
    # A database that has no tables yet, and one that does not answer.
    url = (
        f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        if database == "unmigrated"
        else "postgres://counters@127.0.0.1:1/counters"
    )
    result = project_command(
        [sys.executable, "manage.py", "counter", "show", GLOBAL],
        {"DATABASE_URL": url, "SECRET_KEY": "x" * 50},
        timeout=60,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("CommandError: The database could not answer (")
    assert reason in line
    assert line.endswith("; is it running, and migrated (manage.py migrate)?")


@pytest.mark.django_db(transaction=True)
def test_shell_bad_number_is_a_usage_error(tickets):
    before = state()
    result = manage("incr", "tickets", "--by", "abc")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "manage.py counter incr: error: argument --by: invalid int value: 'abc'"
    )
    assert result.stderr.startswith("usage: manage.py counter incr")
    assert state() == before


@pytest.mark.django_db(transaction=True)
def test_shell_delete_without_terminal_or_yes_is_refused(tickets):
    before = state()
    result = manage("delete", "tickets")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "CommandError: Counter 'tickets' was not deleted: there is no terminal to "
        "confirm on, so pass --yes."
    ]
    assert state() == before


@pytest.mark.django_db(transaction=True)
def test_shell_delete_on_a_real_terminal_asks_first(tickets):
    controller, terminal = pty.openpty()
    try:
        # The terminal holds the typed line until the command reads it.
        os.write(controller, b"y\n")
        result = manage("delete", "tickets", stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0
    assert result.stderr.endswith(
        f"counter tickets delete: 10 -> None by {SHELL_ACTOR} via cli\n"
    )
    assert result.stdout == (
        "Delete counter 'tickets' (value 10)? [y/N] "
        "Deleted counter 'tickets' (last value 10).\n"
    )
    assert not Counter.objects.filter(name="tickets").exists()


DJANGO_ADMIN = os.path.join(os.path.dirname(sys.executable), "django-admin")


@pytest.mark.parametrize(
    "program",
    [
        [sys.executable, "manage.py"],
        [sys.executable, "-m", "django"],
        [DJANGO_ADMIN],
    ],
    ids=["manage.py", "python -m django", "django-admin"],
)
@pytest.mark.django_db(transaction=True)
def test_logs_never_share_stdout_with_the_value(tickets, program):
    # Before #12 the log stream was chosen by the program's name: only
    # manage.py kept the log line off stdout.
    env = {**database_env(), "DJANGO_SETTINGS_MODULE": "counterproject.settings"}
    result = project_command([*program, "counter", "incr", "tickets"], env, timeout=60)
    assert (result.returncode, result.stdout) == (0, "11\n"), result.stderr
    assert "counter tickets increment: 10 -> 11" in result.stderr


def test_an_unrecognized_argument_with_a_newline_is_one_line(tickets):
    assert fails("list", "a\nb\u2028c") == (
        "Error: unrecognized arguments: a\\nb\\u2028c"
    )
