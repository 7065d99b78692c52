"""
The ``multiprocessing.Manager`` of the naive demo: one per gunicorn master (#13).

With COUNTERS_NAIVE_DEMO=1, gunicorn.conf.py starts it in the master before
any worker is forked, so every worker of that master inherits proxies to the
same value and lock; another master (another host) has a Manager of its own.
A process not forked from such a master (runserver, the test client) starts
one on first use. Django is not imported here: the master loads no apps.
"""

import os
import threading
from multiprocessing import process
from multiprocessing.managers import SyncManager

manager: SyncManager | None = None
value = lock = None  # proxies to the objects the Manager's server process holds
_starting = threading.Lock()


def start() -> SyncManager:
    """Start a Manager server holding a value and a lock, and keep proxies to them."""
    global manager, value, lock
    manager = SyncManager()
    manager.start()
    # A gunicorn worker, forked from this process, would otherwise try to join
    # the server process at exit as its own ("can only join a child process").
    os.register_at_fork(
        after_in_child=lambda: process._children.discard(manager._process)
    )
    # Each thread that uses a proxy opens its own connection on first use, so
    # the proxies may cross a fork as long as this process never uses them.
    value, lock = manager.Value("q", 0), manager.Lock()
    return manager


def shared() -> tuple:
    """Return the shared value and lock, starting a Manager here if none runs."""
    with _starting:
        if manager is None:
            start()
    return value, lock
