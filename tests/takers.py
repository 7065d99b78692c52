"""
A take loop run in a separate OS process by the concurrency tests.

It is handed the database explicitly (a URL) and sets Django up itself, as a
separate gunicorn worker or host would; nothing is inherited through fork.
"""

import os
from concurrent.futures import ThreadPoolExecutor


def take_in_process(database_url: str, name: str, threads: int, takes: int, start):
    """Take ``takes`` numbers from ``threads`` threads and return them."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "counterproject.settings")
    import django

    django.setup()
    from django.db import connection

    from counters.services import counter_take

    def take(_):
        try:
            return counter_take(name)
        finally:
            connection.close()

    start.wait()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(take, range(takes)))
