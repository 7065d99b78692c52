"""
``manage.py counter``: list, inspect and change named counters from a shell.

Every change goes through one service with the shell's actor, so it lands in
the audit trail as source ``cli``. A change prints the new value alone on
stdout, for scripts; a ``CounterError`` becomes a ``CommandError``: one line
on stderr, a non-zero exit and nothing changed.
"""

import getpass
import inspect
import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from counters.actors import Actor
from counters.exceptions import CounterError
from counters.models import Source
from counters.parsing import parse_integer
from counters.selectors import counter_get, counter_history, counter_list
from counters.services import (
    counter_create,
    counter_decrement,
    counter_delete,
    counter_increment,
    counter_reset,
    counter_set,
)

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
    help = "List, show, create, change, delete named counters and read their history."

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

    @staticmethod
    def add_json(parser) -> None:
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print JSON."
        )

    def handle(self, *args, action, **options):
        handler = getattr(self, f"handle_{action}")
        wanted = inspect.signature(handler).parameters
        try:
            handler(**{key: options[key] for key in wanted})
        except CounterError as exc:
            raise CommandError(str(exc)) from exc

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
        if not sys.stdin.isatty():
            raise CommandError(
                f"Counter {name!r} was not deleted: there is no terminal to "
                "confirm on, so pass --yes."
            )
        self.stdout.write(
            f"Delete counter {name!r} (value {counter.value})? [y/N] ", ending=""
        )
        self.stdout.flush()
        try:
            answer = sys.stdin.readline()
        except KeyboardInterrupt:
            answer = ""
        if not answer.endswith("\n"):
            # End of input or Ctrl-C: end the prompt's line before answering.
            self.stdout.write("")
        return answer.strip().lower() in {"y", "yes"}
