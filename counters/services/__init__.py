"""
Every write: the rules of changing a counter, stated once.

- ``take``: the take, a counter's next number, batched with the takes that
  arrive with it in this process;
- ``changes``: the other changes staff and operators make (increment,
  decrement, set, reset, create, configure, delete);
- ``visitors``: each visitor's own counter, kept in their session;
- ``history``: pruning the audit trail, in batches that lock no counter;
- ``rules``: what these share: what a step may be, the signed 64-bit bound,
  the row lock and who gets recorded in the audit trail.

Each change is one short transaction that locks the counter's row with
``SELECT … FOR UPDATE`` (on SQLite, the database's write lock taken at
``BEGIN IMMEDIATE``), so concurrent callers are serialized: no value is handed
out twice and none is skipped. Arguments are checked before anything is
locked, and a refused change raises a ``CounterError`` and changes nothing.
"""

from .changes import (
    counter_configure,
    counter_create,
    counter_decrement,
    counter_delete,
    counter_increment,
    counter_reset,
    counter_set,
    counters_change,
)
from .history import counter_history_prune
from .take import acounter_take, check_take_step, counter_take
from .visitors import (
    session_counter_decrement,
    session_counter_increment,
    session_counter_reset,
)

__all__ = [
    "acounter_take",
    "check_take_step",
    "counter_configure",
    "counter_create",
    "counter_decrement",
    "counter_delete",
    "counter_history_prune",
    "counter_increment",
    "counter_reset",
    "counter_set",
    "counter_take",
    "counters_change",
    "session_counter_decrement",
    "session_counter_increment",
    "session_counter_reset",
]
