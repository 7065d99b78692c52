"""
The ``multiprocessing`` Manager of the naive demo: one per gunicorn master (#13).

A Manager's server process holds one value and one lock; every process that
connects to it gets proxies to the same two objects. With
COUNTERS_NAIVE_DEMO=1, gunicorn.conf.py starts the server in the master
before any worker is forked and leaves its address and key in the
environment, so every worker of that master connects to the same server;
another master (another host) starts its own. A process not started by such
a master (runserver, the test client) starts one on first use.

The server runs as ``python -m naive_demo.manager``, a process of its own
rather than a ``multiprocessing`` child: a worker forked from the master
would otherwise count the master's child as its own, and fail to join it at
exit. Django is not imported here: the master loads no apps.
"""

import atexit
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.managers import BaseManager, BaseProxy, ValueProxy

ADDRESS = "COUNTERS_NAIVE_MANAGER_ADDRESS"  # host:port of the server
AUTHKEY = "COUNTERS_NAIVE_MANAGER_KEY"  # its key, in hex

_shared: tuple | None = None
_starting = threading.Lock()


class Number:
    """The value the server holds: what ``ValueProxy`` reads and writes."""

    def __init__(self) -> None:
        self.value = 0

    def get(self) -> int:
        return self.value

    def set(self, value: int) -> None:
        self.value = value


class LockProxy(BaseProxy):
    """A ``with`` block around the server's lock: acquired there, released there."""

    _exposed_ = ("acquire", "release")

    def __enter__(self) -> None:
        self._callmethod("acquire")

    def __exit__(self, *exc_info: object) -> None:
        self._callmethod("release")


class DemoManager(BaseManager):
    """Hands every client proxies to the server's one value and one lock."""

    # Made by register() below: each returns a proxy.
    value: Callable[[], ValueProxy]
    lock: Callable[[], LockProxy]


# What a client may ask for; the server registers the objects behind them.
DemoManager.register("value", proxytype=ValueProxy)
DemoManager.register("lock", proxytype=LockProxy)


def start() -> subprocess.Popen:
    """
    Start a Manager server and put its address and key in this process's
    environment, for the workers it forks (or itself) to connect to.
    """
    key = secrets.token_hex(32)
    server = subprocess.Popen(
        [sys.executable, "-m", "naive_demo.manager"],
        env={**os.environ, AUTHKEY: key},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    address = server.stdout.readline().strip()  # printed once it listens
    server.stdout.close()
    if not address:
        server.wait(10)
        raise RuntimeError(
            "The naive demo's Manager (python -m naive_demo.manager) did not start."
        )
    os.environ[ADDRESS], os.environ[AUTHKEY] = address, key
    return server


def stop(server: subprocess.Popen) -> None:
    """Stop a server ``start`` returned."""
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def shared() -> tuple:
    """Return proxies to the shared value and lock, starting a server if none runs."""
    global _shared
    with _starting:
        if _shared is None:
            if ADDRESS not in os.environ:
                atexit.register(stop, start())
            host, port = os.environ[ADDRESS].rsplit(":", 1)
            manager = DemoManager(
                address=(host, int(port)), authkey=bytes.fromhex(os.environ[AUTHKEY])
            )
            manager.connect()
            # Each thread that uses a proxy opens its own connection to the
            # server on first use.
            _shared = manager.value(), manager.lock()
    return _shared


def serve() -> None:
    """Run the server (``python -m naive_demo.manager``) until terminated."""
    value, lock = Number(), threading.Lock()
    DemoManager.register("value", callable=lambda: value, proxytype=ValueProxy)
    DemoManager.register("lock", callable=lambda: lock, proxytype=LockProxy)
    manager = DemoManager(
        address=("127.0.0.1", 0), authkey=bytes.fromhex(os.environ[AUTHKEY])
    )
    server = manager.get_server()
    address = server.address
    assert isinstance(address, tuple)
    host, port = address
    threading.Thread(target=_exit_with, args=[os.getppid()], daemon=True).start()
    print(f"{host}:{port}", flush=True)
    server.serve_forever()


def _exit_with(parent: int) -> None:
    """End the server when the process that started it is gone (killed)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


if __name__ == "__main__":
    serve()
