"""
Reading the environment: each helper returns one variable's value, or raises
``ImproperlyConfigured`` with one sentence naming the variable to set.

settings.py, gunicorn.conf.py and the system checks read their variables
through these, so that a bad value stops each of them with the same line.
The module imports nothing from the app: the project's settings must load
before any app does.
"""

import ipaddress
import os
import re
from typing import NoReturn

from django.core.exceptions import ImproperlyConfigured

# A number typed as text: an optional sign and ASCII digits, nothing else
# (int() also takes spaces, "1_000" and the digits of every script). The same
# rule as the app's edges (counters.parsing), which the project cannot import.
INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
# Python refuses to convert longer digit strings (sys.int_info).
MAX_DIGITS = 4300

# Above a day, no wait or age makes sense; and a pool wait longer than
# threading.TIMEOUT_MAX would fail (OverflowError) when the pool is full.
MAX_SECONDS = 86_400
SECONDS_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
SECONDS = f"seconds above 0 and at most {MAX_SECONDS} (such as 2.5)"

# One rate in the notation of the limits library ("60/minute", "10/2
# minutes"), with s, m, h and d short for second, minute, hour and day.
RATE_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


def missing(name: str, hint: str = "") -> NoReturn:
    """Raise ImproperlyConfigured naming the variable that must be set."""
    raise ImproperlyConfigured(f"Set the {name} environment variable{hint}.")


def parse_integer(text: object) -> int:
    """Return the integer that ``text`` spells, an optional sign and ASCII digits."""
    if (
        not isinstance(text, str)
        or len(text) > MAX_DIGITS
        or not INTEGER_TEXT.fullmatch(text)
    ):
        raise ValueError(f"{text!r} is not an optional sign and ASCII digits.")
    return int(text)


def positive_integer(text: str) -> int:
    """Return the whole number 1 or more that ``text`` spells (or ValueError)."""
    number = parse_integer(text)
    if number < 1:
        raise ValueError(f"{text!r} is less than 1.")
    return number


def positive_seconds(text: str) -> float:
    """Return the seconds, above 0 and at most a day, ``text`` spells."""
    # ASCII digits and a point only: float() also takes "nan", "1e3", "1_0".
    if not SECONDS_TEXT.fullmatch(text) or not 0 < float(text) <= MAX_SECONDS:
        raise ValueError(f"{text!r} is not a number of seconds.")
    return float(text)


def env_flag(name: str, *, default: bool) -> bool:
    """Return the boolean environment variable ``name`` (``1``/``0``)."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"Set {name} to 1 or 0, not {raw!r}.")


def env_list(name: str, *, default: str) -> list[str]:
    """Return the comma-separated environment variable ``name`` as a list."""
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int(name: str, *, default: int, minimum: int = 1) -> int:
    """Return the whole-number environment variable ``name``, at least ``minimum``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        number = parse_integer(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"Set {name} to a whole number, not {raw!r}."
        ) from None
    if number < minimum:
        raise ImproperlyConfigured(f"Set {name} to {minimum} or more, not {raw!r}.")
    return number


def env_seconds(name: str, *, default: float) -> float:
    """Return the environment variable ``name`` in seconds, at most a day."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return positive_seconds(raw)
    except ValueError:
        raise ImproperlyConfigured(f"Set {name} to {SECONDS}, not {raw!r}.") from None


def env_rate(name: str, *, default: str) -> str | None:
    """Return the rate limit ``name`` as limits' notation, or None for ``off``."""
    from limits import parse

    raw = os.environ.get(name, "").strip() or default
    if raw.lower() == "off":
        return None
    amount, slash, unit = raw.partition("/")
    rate = f"{amount.strip()}/{RATE_UNITS.get(unit.strip(), unit.strip())}"
    try:
        valid = bool(slash) and ";" not in raw and parse(rate).amount > 0
    except ValueError:
        valid = False
    if not valid:
        raise ImproperlyConfigured(
            f"Set {name} to a rate such as 60/minute (or off), not {raw!r}."
        )
    return rate


def env_networks(name: str) -> list:
    """Return the addresses and networks listed in ``name``."""
    networks = []
    for item in env_list(name, default=""):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            missing(name, f" to addresses or networks such as 10.0.0.0/8, not {item!r}")
    return networks
