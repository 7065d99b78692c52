"""
What every edge accepts: a counter's name, and a number sent as text.

Python's ``int()`` is too lenient for an edge that must refuse what it does
not understand: it takes surrounding spaces, underscores (``"1_000"``) and the
digits of every script (``"١"``). Here a number is an optional sign and ASCII
digits, nothing else. JSON needs no reading: a step there is a JSON integer,
which ``is_integer`` tells from a bool or a float.
"""

import re

from .exceptions import InvalidName

# Counter.name is a SlugField(max_length=100): Django's ASCII slug.
COUNTER_NAME = re.compile(r"[-a-zA-Z0-9_]+")
NAME_MAX_LENGTH = 100

INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")

# Python refuses to convert longer digit strings (sys.int_info): such a text
# is no number anyone means, and it is refused like any other bad text.
MAX_DIGITS = 4300


def is_integer(value: object) -> bool:
    """Return whether ``value`` is an integer, bools excluded."""
    # bool is an int subclass, but True is no step and no value.
    return isinstance(value, int) and not isinstance(value, bool)


def parse_integer(text: object) -> int:
    """
    Return the integer that ``text`` spells, an optional sign and ASCII digits.

    Anything else raises ``ValueError`` (as ``int()`` does, so ``argparse``
    and form fields report it as a bad number).
    """
    if (
        not isinstance(text, str)
        or len(text) > MAX_DIGITS
        or not INTEGER_TEXT.fullmatch(text)
    ):
        raise ValueError(f"{text!r} is not an optional sign and ASCII digits.")
    return int(text)


def check_name(name: object) -> None:
    """Refuse what cannot be a counter's name, whether to create or to find it."""
    # A name is looked up by the same rule it was created by, so that text no
    # counter can have (a NUL, an unencodable byte from argv) never reaches
    # the database.
    if not isinstance(name, str) or not COUNTER_NAME.fullmatch(name):
        raise InvalidName(
            f"{name!r} is not a valid counter name: use letters, digits, "
            "hyphens and underscores."
        )
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidName(f"A counter name has at most {NAME_MAX_LENGTH} characters.")
