"""
A gevent worker's turnstile: a kept-alive connection whose next request is
already waiting goes behind every connection that waited for I/O (#23).

A greenlet switches only when it would wait. One that serves a kept-alive
connection whose next request has already arrived never waits: while its
answers need no I/O (a 405, a 404, a static file), it serves that one client
for as long as the client keeps asking, and every other connection of the
worker starves (10 clients of ``GET /`` got no answer in 5 s beside a
100-connection flood of 405s). gunicorn.conf.py's ``post_request`` makes each
greenlet pass here after each request.

Here it waits until the worker has nothing else ready (an idle watcher:
the loop has no pending I/O, timer or callback), and then at most
``PER_TURN`` of the waiting greenlets go on before the loop looks at its I/O
again. ``gevent.idle()`` alone would let every waiting greenlet go on at
once, and a take, which waits for PostgreSQL four times, waited for the whole
flood's turn each time (p99 about 0.5 s beside a flood of 405s, against
about 0.1 s here); one at a time cost the flood itself a third of its rate.
docs/fairness.md has the measurements.
"""

from collections import deque
from typing import Any

from gevent.hub import Waiter, get_hub

# Greenlets let through per quiet moment of the loop: 1 cost the flood
# 30-45 % of its rate, 16 left takes beside it a p99 near 0.2 s (trials).
PER_TURN = 4


class Turnstile:
    """Greenlets wait in line here until the worker's loop is idle."""

    def __init__(self, per_turn: int = PER_TURN) -> None:
        self.per_turn = per_turn
        self.waiting: deque[Waiter] = deque()
        self.watcher: Any = None  # made in the worker, on the loop of its hub

    def wait(self) -> None:
        """Return once the worker has had nothing else to do; first come first."""
        if self.watcher is None:
            self.watcher = get_hub().loop.idle()
        waiter = Waiter()
        self.waiting.append(waiter)
        if not self.watcher.active:
            self.watcher.start(self._let_through)
        waiter.get()

    def _let_through(self) -> None:
        # Runs in the hub: each switch runs a greenlet until it waits again.
        for _ in range(min(self.per_turn, len(self.waiting))):
            self.waiting.popleft().switch(None)
        if not self.waiting:
            self.watcher.stop()
