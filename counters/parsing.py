"""
What every edge accepts of a number sent as text (a counter's name has its
rule in ``counters.names``).

Python's ``int()`` is too lenient for an edge that must refuse what it does
not understand: it takes surrounding spaces, underscores (``"1_000"``) and the
digits of every script (``"١"``). Here a number is an optional sign and ASCII
digits, nothing else. JSON needs no reading: a step there is a JSON integer,
which ``is_integer`` tells from a bool or a float.
"""

import re
from typing import TypeGuard

INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")

# Python refuses to convert longer digit strings (sys.int_info): such a text
# is no number anyone means, and it is refused like any other bad text.
MAX_DIGITS = 4300


def is_integer(value: object) -> TypeGuard[int]:
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
