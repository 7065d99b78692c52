"""
JSON endpoints.

They carry no session and no cookie, so CSRF protection (which guards
cookie-authenticated requests) does not apply; every client is anonymous.
"""

import json
from functools import wraps

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .exceptions import (
    CounterError,
    CounterNotFound,
    CounterNotPublic,
)
from .selectors import counter_get
from .services import counter_take

ERROR_STATUS = {CounterNotFound: 404, CounterNotPublic: 403}


def json_error(message: str, status: int) -> JsonResponse:
    """Return ``{"error": message}`` with the given status."""
    return JsonResponse({"error": message}, status=status)


def api_endpoint(*methods: str):
    """Make a view CSRF-exempt, JSON-only for errors, and limited to ``methods``."""

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                response = json_error(
                    f"Method {request.method} is not allowed here; use "
                    f"{' or '.join(methods)}.",
                    405,
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except CounterError as exc:
                return json_error(str(exc), ERROR_STATUS.get(type(exc), 400))

        return wrapper

    return decorator


def counter_json(name: str, value: int) -> JsonResponse:
    return JsonResponse({"name": name, "value": value})


@api_endpoint("GET")
def counter_detail(request, name: str):
    counter = counter_get(name)
    if not counter.public:
        raise CounterNotPublic(f"Counter {name!r} is not public.")
    return counter_json(counter.name, counter.value)


@api_endpoint("POST")
def counter_increment(request, name: str):
    error = _anonymous_step_error(request)
    if error:
        return json_error(error, 400)
    return counter_json(name, counter_take(name, public_only=True))


def _anonymous_step_error(request) -> str | None:
    """Return why the request asks for more than a step of 1, or None."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (UnicodeDecodeError, ValueError):
            return 'The request body must be empty or JSON such as {"by": 1}.'
    else:
        # A form post, or no body at all.
        data = request.POST.dict()
    if not isinstance(data, dict) or set(data) - {"by"}:
        return 'The request body may only hold "by", as in {"by": 1}.'
    by = data.get("by", 1)
    if isinstance(by, bool) or by not in (1, "1"):
        return "Anonymous clients may only increment by exactly 1."
    return None
