"""
ASGI entry point: ``counterproject.asgi:application``.

Django's own handler, with one change: a synchronous view that names an
asynchronous twin (``view.asgi_view``, as the API's take does) is served by
the twin. Django runs a synchronous view under ASGI in a thread made for
that request alone: each take would pay for a new thread, and concurrent
takes could not wait together for one batch in the event loop.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "counterproject.settings")

import django  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402


class TwinASGIHandler(ASGIHandler):
    """Serve a view's asynchronous twin, where it has one."""

    def resolve_request(self, request):
        match = super().resolve_request(request)
        twin = getattr(match.func, "asgi_view", None)
        if twin is not None:
            match.func = twin
        return match


django.setup(set_prefix=False)
application = TwinASGIHandler()
