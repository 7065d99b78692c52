"""
The deployment's system checks: do the workers' pools fit the server (#23)?

``manage.py check --deploy`` runs them (``--tag pool`` alone); the gunicorn
master runs the same test at start, with the number of workers it starts
(gunicorn.conf.py). Not tagged ``database``: Django runs such checks only
when ``check`` is given ``--database``.
"""

import multiprocessing

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from counterproject.postgresql.capacity import HINT, WARNING_ID, pool_shortfall

POOLED_ENGINE = "counterproject.postgresql"


@checks.register("pool", deploy=True)
def check_pool_fits_server(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Warn when gunicorn's workers would open more connections than allowed."""
    from counterproject.env import env_int

    database = settings.DATABASES["default"]
    if database["ENGINE"] != POOLED_ENGINE:
        return []
    try:
        # As gunicorn.conf.py counts them; a command line's --workers is
        # known only to the gunicorn master, which checks again.
        workers = env_int("GUNICORN_WORKERS", default=multiprocessing.cpu_count())
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="counterproject.E001")]
    shortfall = pool_shortfall(database, workers)
    if shortfall is None:
        return []
    return [checks.Warning(shortfall, hint=HINT, id=WARNING_ID)]
