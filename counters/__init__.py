"""
Named counters that stay correct under concurrency: the app's public API.

    import counters

    number = counters.take("invoice")  # the next number: never handed out twice
    number = await counters.atake("invoice")  # the same, from async code
    counters.increment("stock", by=5, actor=counters.Actor(counters.Source.ADMIN,
                                                          "user:ada"))
    counters.value("invoice")  # the last number taken
    counters.history("invoice")  # the latest audit entries, newest first

A take inside the caller's transaction joins it: its number is used only if
that transaction commits, and the counter's row stays locked until then.
Outside a transaction, the takes that arrive together in a process share
one short transaction, each still getting its own number. A refused call
raises a ``CounterError`` and changes nothing. The names below are loaded on
first use, so that importing this package needs no app registry.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .exceptions import (
    CounterError,
    CounterExists,
    CounterNotFound,
    CounterNotPublic,
    CounterProtected,
    InvalidLimit,
    InvalidName,
    InvalidStep,
    InvalidValue,
    OutOfRange,
)

if TYPE_CHECKING:
    from .actors import Actor
    from .models import Counter, CounterEvent, Source
    from .selectors import counter_history as history
    from .selectors import counter_value as value
    from .services import acounter_take as atake
    from .services import counter_create as create
    from .services import counter_decrement as decrement
    from .services import counter_increment as increment
    from .services import counter_reset as reset
    from .services import counter_set as set
    from .services import counter_take as take

# Each public name: the module that holds it, and its name there.
_LAZY = {
    "take": ("counters.services", "counter_take"),
    "atake": ("counters.services", "acounter_take"),
    "increment": ("counters.services", "counter_increment"),
    "decrement": ("counters.services", "counter_decrement"),
    "set": ("counters.services", "counter_set"),
    "reset": ("counters.services", "counter_reset"),
    "create": ("counters.services", "counter_create"),
    "value": ("counters.selectors", "counter_value"),
    "history": ("counters.selectors", "counter_history"),
    "Actor": ("counters.actors", "Actor"),
    "Source": ("counters.models", "Source"),
    "Counter": ("counters.models", "Counter"),
    "CounterEvent": ("counters.models", "CounterEvent"),
}

__all__ = [
    "Actor",
    "Counter",
    "CounterError",
    "CounterEvent",
    "CounterExists",
    "CounterNotFound",
    "CounterNotPublic",
    "CounterProtected",
    "InvalidLimit",
    "InvalidName",
    "InvalidStep",
    "InvalidValue",
    "OutOfRange",
    "Source",
    "atake",
    "create",
    "decrement",
    "history",
    "increment",
    "reset",
    "set",
    "take",
    "value",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'counters' has no attribute {name!r}") from None
    return getattr(import_module(module), attribute)
