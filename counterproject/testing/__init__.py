"""
What the test suite and the benchmarks run the project with.

``servers``: throwaway PostgreSQL, Redis and gunicorn on loopback, and
``migrate``; ``visitors``: a browser-like visitor over real HTTP. Both
``tests/`` and ``bench/`` import them; neither imports the other. They need
the ``test`` extra (mirakuru, port-for, pytest-redis, requests).
"""
