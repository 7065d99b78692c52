"""
JSON endpoints.

``/api/counters/…`` carries no session and no cookie, so CSRF protection
(which guards cookie-authenticated requests) does not apply there: every
client is anonymous. ``/api/me/…`` works on the visitor's session, so its
POSTs need the session cookie and an ``X-CSRFToken`` header, as Django
expects of scripts; ``GET /api/me/`` sets the CSRF cookie.
"""

import json
from functools import wraps

from asgiref.sync import iscoroutinefunction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie

from . import health
from .actors import Actor
from .exceptions import CounterError, CounterNotFound, CounterNotPublic, InvalidStep
from .models import Source
from .parsing import is_integer, parse_integer
from .ratelimits import (
    TAKE,
    VISITOR,
    client_address,
    rate_limit_status,
    rate_limited,
    refusal,
)
from .selectors import counter_get, session_counter_get
from .services import (
    acounter_take,
    check_take_step,
    counter_take,
    session_counter_decrement,
    session_counter_increment,
    session_counter_reset,
)

ERROR_STATUS = {CounterNotFound: 404, CounterNotPublic: 403}
FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}


def error_status(exc: CounterError) -> int:
    """Return the status of a domain error: its nearest class's, else 400."""
    # By the class hierarchy, so that a subclass of "not found" is a 404.
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 400


class BadRequestBody(Exception):
    """The request body is not what the endpoint takes."""


def json_error(message: str, status: int) -> JsonResponse:
    """Return ``{"error": message}`` with the given status."""
    return JsonResponse({"error": message}, status=status)


def api_endpoint(*methods: str):
    """Limit a view to ``methods`` and answer every error with JSON."""

    def refused(request):
        if request.method in methods:
            return None
        response = json_error(
            f"Method {request.method} is not allowed here; use {' or '.join(methods)}.",
            405,
        )
        response["Allow"] = ", ".join(methods)
        return response

    def decorator(view):
        if iscoroutinefunction(view):

            @wraps(view)
            async def wrapper(request, *args, **kwargs):
                if (response := refused(request)) is not None:
                    return response
                try:
                    return await view(request, *args, **kwargs)
                except (BadRequestBody, CounterError) as exc:
                    return error_response(exc)

        else:

            @wraps(view)
            def wrapper(request, *args, **kwargs):
                if (response := refused(request)) is not None:
                    return response
                try:
                    return view(request, *args, **kwargs)
                except (BadRequestBody, CounterError) as exc:
                    return error_response(exc)

        return wrapper

    return decorator


def error_response(exc: Exception) -> JsonResponse:
    """Answer a bad body with 400 and a domain error with its own status."""
    if isinstance(exc, CounterError):
        return json_error(str(exc), error_status(exc))
    return json_error(str(exc), 400)


def requested_step(request) -> object:
    """
    Return the ``by`` the request asks for (1 when the body is empty).

    In JSON it is taken as it stands; in a form it is read as an optional
    sign and ASCII digits, and other text goes on as text. Either way it is
    not yet checked: ``integer_step`` or ``check_take_step`` refuses what is
    not an integer (a bool, a float, a string) before any service runs.
    """
    if request.content_type == "application/json":
        data = _json_body(request)
    elif request.content_type in FORM_TYPES:
        data = _form_body(request)
    elif request.META.get("CONTENT_LENGTH", "0") not in ("", "0"):
        raise BadRequestBody(
            "Send the body as JSON (Content-Type: application/json), such as "
            '{"by": 1}, or send none.'
        )
    else:
        data = {}
    if not isinstance(data, dict) or set(data) - {"by"}:
        raise BadRequestBody(ONLY_BY)
    return data.get("by", 1)


def integer_step(by: object) -> int:
    """Return ``by`` when it is an integer; refuse a bool, a float or text."""
    if not is_integer(by):
        raise InvalidStep(f"The step must be a positive integer, not {by!r}.")
    return by


ONLY_BY = 'The request body may only hold "by", as in {"by": 1}.'


def _json_body(request) -> object:
    try:
        return json.loads(request.body or b"{}")
    # RecursionError: deeply nested arrays are valid JSON that Python's
    # parser cannot read.
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequestBody(
            'The request body must be empty or JSON such as {"by": 1}.'
        ) from None


def _form_body(request) -> dict:
    if request.FILES:
        raise BadRequestBody(ONLY_BY)
    fields = dict(request.POST.lists())
    if set(fields) - {"by"}:
        raise BadRequestBody(ONLY_BY)
    if "by" not in fields:
        return {}
    [text, *more] = fields["by"]
    if more:
        raise BadRequestBody('Send "by" once, as in by=1.')
    try:
        return {"by": parse_integer(text)}
    except ValueError:
        return {"by": text}  # the service names the bad step


def too_many(request, scope: str, wait: int) -> JsonResponse:
    """Answer a client over its limit: 429, and when to come back."""
    response = json_error(refusal(scope, wait), 429)
    response["Retry-After"] = str(wait)
    return response


# --- Named counters ---------------------------------------------------------


def client_actor(request) -> Actor:
    """Return the anonymous API client, named by its address."""
    return Actor(Source.API, f"ip:{client_address(request)}")


@csrf_exempt
@api_endpoint("GET")
def counter_detail(request, name: str):
    counter = counter_get(name, public_only=True)
    return JsonResponse({"name": counter.name, "value": counter.value})


@csrf_exempt
@api_endpoint("POST")
@rate_limited(TAKE, too_many)
def counter_take_number(request, name: str):
    """Take the next number of a public counter: ``POST …/increment/``."""
    actor = client_actor(request)
    check_take_step(requested_step(request), actor=actor)
    number = counter_take(name, actor=actor, public_only=True)
    return taken(request, name, number)


@csrf_exempt
@api_endpoint("POST")
@rate_limited(TAKE, too_many)
async def acounter_take_number(request, name: str):
    """
    The take for ASGI: ``counterproject.asgi`` serves it in place of
    ``counter_take_number``.

    It waits for its number in the event loop (``acounter_take``); Django
    would run the synchronous view in a thread made for each request.
    """
    actor = client_actor(request)
    check_take_step(requested_step(request), actor=actor)
    number = await acounter_take(name, actor=actor, public_only=True)
    return taken(request, name, number)


counter_take_number.asgi_view = acounter_take_number


def taken(request, name: str, number: int) -> JsonResponse:
    """Answer a take's number, noted for the request's log line."""
    request.counters_taken = {"counter": name, "number": number}
    return JsonResponse({"name": name, "value": number})


# --- The visitor's own counter ----------------------------------------------


@ensure_csrf_cookie
@api_endpoint("GET")
def me_detail(request):
    return JsonResponse({"value": session_counter_get(request.session)})


@api_endpoint("POST")
@rate_limited(VISITOR, too_many)
def me_increment(request):
    by = integer_step(requested_step(request))
    return JsonResponse({"value": session_counter_increment(request.session, by=by)})


@api_endpoint("POST")
@rate_limited(VISITOR, too_many)
def me_decrement(request):
    by = integer_step(requested_step(request))
    return JsonResponse({"value": session_counter_decrement(request.session, by=by)})


@api_endpoint("POST")
@rate_limited(VISITOR, too_many)
def me_reset(request):
    return JsonResponse({"value": session_counter_reset(request.session)})


# --- Health -------------------------------------------------------------------


@csrf_exempt
@api_endpoint("GET", "HEAD")
def healthz(request):
    """
    Report whether the app can serve: 200 while the database answers.

    A cache outage is reported but is not fatal: sessions fall back to the
    database, and rate limits are not applied until it is back.
    """
    database = health.database_status()
    cache = health.cache_status()
    ratelimit = rate_limit_status()
    if database != health.OK:
        status, code = "unavailable", 503
    elif health.UNAVAILABLE in (cache, ratelimit):
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    report = {"status": status, "database": database, "cache": cache}
    response = JsonResponse({**report, "ratelimit": ratelimit}, status=code)
    if code == 503:
        response["Retry-After"] = health.RETRY_AFTER
    return response
