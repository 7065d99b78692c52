"""
The project's error pages: JSON under ``/api/`` and ``/healthz``, HTML elsewhere.

Django's settings name them: ``handler400``, ``handler404`` and ``handler500``
in ``counterproject/urls.py``, ``CSRF_FAILURE_VIEW`` in the settings.
"""

import sys

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views.csrf import csrf_failure as html_csrf_failure
from django.views.defaults import page_not_found as html_page_not_found

from counters import health


def _wants_json(request) -> bool:
    return request.path.startswith(("/api/", "/healthz"))


def _error(request, status: int, message: str):
    if _wants_json(request):
        return JsonResponse({"error": message}, status=status)
    # Rendered without the request: its context processors would read the
    # session, which may live in the database that just failed.
    html = render_to_string("error.html", {"status": status, "message": message})
    return HttpResponse(html, status=status)


def bad_request(request, exception):
    """Answer a request Django could not accept (too large, bad host…)."""
    if isinstance(exception, RequestDataTooBig):
        return _error(request, 400, "Bad request: the request body is too large.")
    # Django's own text can name settings (ALLOWED_HOSTS): not for clients.
    return _error(request, 400, "Bad request: it could not be accepted.")


def server_error(request):
    """
    Answer an unexpected error: 503 while the database is unreachable.

    Django calls this while handling the exception, so it can tell a database
    outage (retry soon; nothing committed is lost) from a bug (logged with its
    traceback by Django; never shown).
    """
    error = sys.exc_info()[1]
    if isinstance(error, OperationalError | InterfaceError):
        response = _error(
            request,
            503,
            "The database is unavailable; try again in a few seconds.",
        )
        response["Retry-After"] = health.RETRY_AFTER
        return response
    return _error(request, 500, "Something went wrong on our side; it was logged.")


def page_not_found(request, exception):
    """Answer an unknown URL with JSON under /api/ and with a page elsewhere."""
    if _wants_json(request):
        return JsonResponse(
            {"error": f"There is nothing at {request.path}."}, status=404
        )
    return html_page_not_found(request, exception)


def csrf_failure(request, reason=""):
    """Refuse a request without a valid CSRF token: JSON under /api/."""
    if _wants_json(request):
        return JsonResponse(
            {
                "error": "CSRF check failed: send the csrftoken cookie's value "
                "in an X-CSRFToken header (GET /api/me/ sets the cookie)."
            },
            status=403,
        )
    return html_csrf_failure(request, reason)
