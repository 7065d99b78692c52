"""WSGI entry point, as gunicorn loads it: ``counterproject.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "counterproject.settings")

application = get_wsgi_application()
