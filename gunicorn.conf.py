"""
gunicorn configuration: ``gunicorn -c gunicorn.conf.py counterproject.wsgi``.

Every value can be overridden from the environment or the command line.
"""

import multiprocessing
import os
import sys

wsgi_app = "counterproject.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Several processes, each with several threads: the counter is correct
# across both because its state lives in the database, not in a worker.
workers = int(os.environ.get("WEB_CONCURRENCY", min(4, 2 * multiprocessing.cpu_count())))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 8))
accesslog = "-"
errorlog = "-"


def _check_settings() -> None:
    """Exit with one line naming the setting to fix, before any worker boots."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "counterproject.settings")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.SECRET_KEY  # noqa: B018 - reading it loads the settings
    except ImproperlyConfigured as exc:
        sys.exit(f"Error: {exc}")


_check_settings()
