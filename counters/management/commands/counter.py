"""
``manage.py counter``: list, inspect and change named counters from a shell.

Every change goes through one service with the shell's actor, so it lands in
the audit trail as source ``cli``. A change prints the new value alone on
stdout, for scripts; a ``CounterError`` becomes a ``CommandError``: one line
on stderr, a non-zero exit and nothing changed.
"""

import argparse
import getpass
import inspect
import json
import re
import sys
from datetime import date, datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from counters.actors import Actor
from counters.exceptions import CounterError
from counters.models import Source
from counters.parsing import parse_integer
from counters.selectors import (
    counter_get,
    counter_history,
    counter_history_before,
    counter_list,
)
from counters.services import (
    counter_create,
    counter_decrement,
    counter_delete,
    counter_history_prune,
    counter_increment,
    counter_reset,
    counter_set,
)
from counters.services.history import BATCH_SIZE, check_batch_size

HISTORY_LIMIT = 20


def shell_actor() -> Actor:
    """Return the operating-system user running the command."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError):
        # No login name and no passwd entry, as in some containers.
        who = "unknown"
    return Actor(Source.CLI, f"os:{who}")


def integer(text: str) -> int:
    """Return the integer an argument spells: an optional sign and ASCII digits."""
    return parse_integer(text)


integer.__name__ = "int"  # argparse names the type: "invalid int value: 'x'"

DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def day(text: str) -> date:
    """Return the date ``text`` spells as YYYY-MM-DD, in ASCII digits."""
    # date.fromisoformat() also takes "20260101" and week dates.
    if not DAY.fullmatch(text):
        raise ValueError(f"{text!r} is not a date as YYYY-MM-DD.")
    return date.fromisoformat(text)


day.__name__ = "date"


def counter_data(counter) -> dict:
    """Return the JSON shape of a counter."""
    return {
        "name": counter.name,
        "value": counter.value,
        "public": counter.public,
        "updated_at": counter.updated_at.isoformat(),
    }


def event_data(event) -> dict:
    """Return the JSON shape of an audit entry."""
    return {
        "counter": event.counter_name,
        "action": event.action,
        "old_value": event.old_value,
        "new_value": event.new_value,
        "source": event.source,
        "actor": event.actor,
        "at": event.created_at.isoformat(),
    }


def when(moment) -> str:
    """Return a timestamp for people: local time, to the second, ISO 8601."""
    return timezone.localtime(moment).isoformat(timespec="seconds")


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def entries(count: int) -> str:
    """Return "1 audit entry", "2 audit entries"."""
    return f"{count} audit {'entry' if count == 1 else 'entries'}"


def scope(name: str | None) -> str:
    """Return which entries a prune is about: one counter's, or every one's."""
    return "of every counter" if name is None else f"of counter {name!r}"


def shown(value: int | None) -> str:
    """Return an audit value, with "-" where there is none (create, delete)."""
    return "-" if value is None else str(value)


def aligned(rows: list[tuple[str, ...]], *, right: tuple[int, ...] = ()) -> list[str]:
    """Return ``rows`` as lines of columns padded to a common width."""
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    return [
        "  ".join(
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def one_line(text: str) -> str:
    """Return ``text`` with its line breaks escaped, as ``repr()`` writes them."""
    return "".join(
        repr(char)[1:-1] if len(f"x{char}x".splitlines()) > 1 else char for char in text
    )


class Command(BaseCommand):
    help = "List, show, create, change and delete counters; read and prune history."

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        report = parser.error
        # argparse quotes a bad value with repr(), but lists unrecognized
        # arguments as they are: a newline among them would split the
        # error over lines (found by tests/test_generated.py).
        parser.error = lambda message: report(one_line(message))
        return parser

    def add_arguments(self, parser):
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="ACTION", title="actions"
        )

        listing = actions.add_parser("list", help="List all counters.")
        self.add_json(listing)

        show = actions.add_parser("show", help="Show one counter.")
        show.add_argument("name")
        self.add_json(show)

        create = actions.add_parser("create", help="Create a counter at 0.")
        create.add_argument("name")
        create.add_argument(
            "--public",
            action="store_true",
            help="Let anonymous visitors take numbers from it.",
        )

        for action, verb in (("incr", "Add"), ("decr", "Subtract")):
            change = actions.add_parser(action, help=f"{verb} a step (default 1).")
            change.add_argument("name")
            change.add_argument(
                "--by",
                type=integer,
                default=1,
                metavar="N",
                help="The step, a positive integer (default 1).",
            )

        set_ = actions.add_parser("set", help="Set a counter to a value.")
        set_.add_argument("name")
        set_.add_argument("value", type=integer, metavar="VALUE", help="An integer.")

        reset = actions.add_parser("reset", help="Set a counter back to 0.")
        reset.add_argument("name")

        delete = actions.add_parser("delete", help="Delete a counter.")
        delete.add_argument("name")
        delete.add_argument(
            "--yes", action="store_true", help="Delete without asking first."
        )

        history = actions.add_parser(
            "history", help="Show a counter's audit trail, newest first."
        )
        history.add_argument("name")
        history.add_argument(
            "--limit",
            type=integer,
            default=HISTORY_LIMIT,
            metavar="N",
            help=f"Show at most N entries (default {HISTORY_LIMIT}).",
        )
        self.add_json(history)

        prune = actions.add_parser(
            "prune-history",
            help="Remove audit entries older than a date or a number of days.",
        )
        prune.add_argument(
            "name", nargs="?", help="Only this counter's entries (default: all)."
        )
        cutoff = prune.add_mutually_exclusive_group(required=True)
        cutoff.add_argument(
            "--before",
            type=day,
            metavar="YYYY-MM-DD",
            help="Remove the entries older than the start of this day.",
        )
        cutoff.add_argument(
            "--days",
            type=integer,
            metavar="N",
            help="Remove the entries older than N days.",
        )
        prune.add_argument(
            "--yes", action="store_true", help="Remove without asking first."
        )
        prune.add_argument(
            "--batch-size",
            type=integer,
            default=BATCH_SIZE,
            metavar="N",
            help=f"Remove N entries per transaction (default {BATCH_SIZE}).",
        )
        # Also after the action, where it is natural to add: -v 2 prints
        # each batch.
        prune.add_argument(
            "-v",
            "--verbosity",
            type=int,
            choices=[0, 1, 2, 3],
            default=argparse.SUPPRESS,
            help="2 or more: print each batch.",
        )

    @staticmethod
    def add_json(parser) -> None:
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print JSON."
        )

    def handle(self, *args, action, **options):
        handler = getattr(self, f"handle_{action.replace('-', '_')}")
        wanted = inspect.signature(handler).parameters
        try:
            handler(**{key: options[key] for key in wanted})
        except CounterError as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            # Down, unreachable or not migrated: one line, not a traceback.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "?"
            raise CommandError(
                f"The database could not answer ({reason}); is it running, "
                "and migrated (manage.py migrate)?"
            ) from exc

    def write_json(self, data) -> None:
        self.stdout.write(json.dumps(data, indent=2))

    # --- Reads ------------------------------------------------------------

    def handle_list(self, as_json):
        counters = list(counter_list())
        if as_json:
            self.write_json([counter_data(counter) for counter in counters])
        elif not counters:
            self.stdout.write("There are no counters.")
        else:
            rows = [("NAME", "VALUE", "PUBLIC", "LAST CHANGE")] + [
                (c.name, str(c.value), yes_no(c.public), when(c.updated_at))
                for c in counters
            ]
            self.stdout.write("\n".join(aligned(rows, right=(1,))))

    def handle_show(self, name, as_json):
        counter = counter_get(name)
        if as_json:
            self.write_json(counter_data(counter))
            return
        self.stdout.write(f"name: {counter.name}")
        self.stdout.write(f"value: {counter.value}")
        self.stdout.write(f"public: {yes_no(counter.public)}")
        self.stdout.write(f"updated_at: {when(counter.updated_at)}")

    def handle_history(self, name, limit, as_json):
        events = counter_history(name, limit=limit)
        if as_json:
            self.write_json([event_data(event) for event in events])
        elif not events:
            self.stdout.write(f"Counter {name!r} has no recorded changes.")
        else:
            olds = [shown(e.old_value) for e in events]
            width = max(map(len, olds))
            rows = [
                (
                    when(e.created_at),
                    e.action,
                    f"{old:>{width}} → {shown(e.new_value)}",
                    e.source,
                    e.actor,
                )
                for e, old in zip(events, olds, strict=True)
            ]
            self.stdout.write("\n".join(aligned(rows)))

    # --- Changes ----------------------------------------------------------

    def handle_create(self, name, public):
        counter = counter_create(name, public=public, actor=shell_actor())
        self.stdout.write(str(counter.value))

    def handle_incr(self, name, by):
        value = counter_increment(name, by=by, actor=shell_actor())
        self.stdout.write(str(value))

    def handle_decr(self, name, by):
        value = counter_decrement(name, by=by, actor=shell_actor())
        self.stdout.write(str(value))

    def handle_set(self, name, value):
        value = counter_set(name, value, actor=shell_actor())
        self.stdout.write(str(value))

    def handle_reset(self, name):
        value = counter_reset(name, actor=shell_actor())
        self.stdout.write(str(value))

    def handle_delete(self, name, yes):
        if not yes and not self.confirm_delete(name):
            self.stdout.write(f"Counter {name!r} was not deleted.")
            return
        value = counter_delete(name, actor=shell_actor())
        self.stdout.write(f"Deleted counter {name!r} (last value {value}).")

    def confirm_delete(self, name) -> bool:
        """Ask on the terminal whether to delete; refuse to guess without one."""
        counter = counter_get(name)  # an unknown name fails before any question
        return self.ask(
            f"Delete counter {name!r} (value {counter.value})?",
            refusal=f"Counter {name!r} was not deleted",
        )

    def handle_prune_history(self, name, before, days, yes, batch_size, verbosity):
        cutoff = self.cutoff(before, days)
        check_batch_size(batch_size)
        if not yes:
            # An unknown name or a future cut-off fails before any question.
            count = counter_history_before(name, before=cutoff).count()
            question = f"Remove {entries(count)} older than {when(cutoff)}"
            refusal = "Nothing was removed"
            if not self.ask(f"{question} {scope(name)}?", refusal=refusal):
                self.stdout.write("Nothing was removed.")
                return
        batches = 0

        def progress(count: int) -> None:
            nonlocal batches
            batches += 1
            self.stdout.write(f"Batch {batches}: removed {entries(count)}.")

        removed = counter_history_prune(
            name,
            before=cutoff,
            actor=shell_actor(),
            batch_size=batch_size,
            progress=progress if verbosity >= 2 else None,
        )
        self.stdout.write(
            f"Removed {entries(removed)} older than {when(cutoff)} {scope(name)}."
        )

    @staticmethod
    def cutoff(before: date | None, days: int | None) -> datetime:
        """Return the moment --before or --days names, in the current time zone."""
        if before is not None:
            return timezone.make_aware(datetime.combine(before, time.min))
        if days < 1:
            raise CommandError(f"The number of days must be positive, not {days}.")
        try:
            return timezone.now() - timedelta(days=days)
        except OverflowError:
            raise CommandError(f"{days} days ago is before the year 1.") from None

    def ask(self, question: str, *, refusal: str) -> bool:
        """Ask ``question`` on the terminal; refuse to guess without one."""
        if not sys.stdin.isatty():
            raise CommandError(
                f"{refusal}: there is no terminal to confirm on, so pass --yes."
            )
        self.stdout.write(f"{question} [y/N] ", ending="")
        self.stdout.flush()
        try:
            answer = sys.stdin.readline()
        except KeyboardInterrupt:
            answer = ""
        if not answer.endswith("\n"):
            # End of input or Ctrl-C: end the prompt's line before answering.
            self.stdout.write("")
        return answer.strip().lower() in {"y", "yes"}
