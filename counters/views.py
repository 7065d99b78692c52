"""HTML pages, and the error pages of the whole project."""

import logging
import sys

from django.contrib import messages
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.csrf import csrf_failure as html_csrf_failure
from django.views.decorators.http import require_GET, require_POST
from django.views.defaults import page_not_found as html_page_not_found

from . import health
from .audit import Actor
from .exceptions import CounterError, CounterNotFound
from .models import GLOBAL
from .selectors import counter_get, session_counter_get
from .services import (
    counter_take,
    session_counter_decrement,
    session_counter_increment,
    session_counter_reset,
)


@require_GET
def index(request):
    try:
        counter = counter_get(GLOBAL)
    except CounterNotFound as exc:
        # A page, not Django's bare 404: it shows the message of a take
        # that found no counter either.
        context = {"status": 404, "message": str(exc)}
        return render(request, "error.html", context, status=404)
    return render(request, "counters/index.html", {"counter": counter})


@require_POST
def take(request):
    try:
        number = counter_take(GLOBAL, actor=Actor.for_visitor(request))
    except CounterError as exc:
        messages.error(request, f"No number was taken: {exc}")
    else:
        messages.success(request, f"Your number is {number}")
    return redirect("counters:index")


@require_GET
def me(request):
    value = session_counter_get(request.session)
    return render(request, "counters/me.html", {"value": value})


def _change_mine(request, change) -> object:
    try:
        value = change(request.session)
    except CounterError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Your counter is now {value}")
    return redirect("counters:me")


@require_POST
def me_increment(request):
    return _change_mine(request, session_counter_increment)


@require_POST
def me_decrement(request):
    return _change_mine(request, session_counter_decrement)


@require_POST
def me_reset(request):
    return _change_mine(request, session_counter_reset)


logger = logging.getLogger(__name__)


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
