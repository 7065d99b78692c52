"""
Benchmark-only settings: production's, plus two comparison views.

The product never loads this module. It keeps the production middleware and
database and adds the framework's own ceiling (a no-op JSON view) and the
closest peer (django-sequences' ``get_next_value``), so that all three are
served by the same gunicorn configuration.
"""

from counterproject.settings import *  # noqa: F403
from counterproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "sequences"]
ROOT_URLCONF = "bench.urls"
