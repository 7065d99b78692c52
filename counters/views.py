"""HTML pages: the global counter and the visitor's own."""

import hashlib

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from .actors import Actor
from .exceptions import CounterError, CounterNotFound
from .models import GLOBAL, Source
from .ratelimits import TAKE, VISITOR, rate_limited, refusal
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


def visitor_actor(request) -> Actor:
    """Return the visitor behind a page request: their user, else their session."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return Actor(Source.WEB, f"user:{user.get_username()}")
    if request.session.session_key is None:
        request.session.save()  # a session key names the visitor
    # The key itself is a credential: the trail keeps a digest of it.
    digest = hashlib.sha256(request.session.session_key.encode()).hexdigest()
    return Actor(Source.WEB, f"session:{digest[:16]}")


def refused_to(page: str):
    """Return a page's answer to a client over its limit: a message and a redirect."""

    def refuse(request, scope: str, wait: int):
        messages.error(request, f"Nothing was changed: {refusal(scope, wait)}")
        response = redirect(page)
        response["Retry-After"] = str(wait)
        return response

    return refuse


@require_POST
@rate_limited(TAKE, refused_to("counters:index"))
def take(request):
    try:
        number = counter_take(GLOBAL, actor=visitor_actor(request))
    except CounterError as exc:
        messages.error(request, f"No number was taken: {exc}")
    else:
        messages.success(request, f"Your number is {number}")
        # For the request's log line (counterproject.middleware).
        request.counters_taken = {"counter": GLOBAL, "number": number}
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
@rate_limited(VISITOR, refused_to("counters:me"))
def me_increment(request):
    return _change_mine(request, session_counter_increment)


@require_POST
@rate_limited(VISITOR, refused_to("counters:me"))
def me_decrement(request):
    return _change_mine(request, session_counter_decrement)


@require_POST
@rate_limited(VISITOR, refused_to("counters:me"))
def me_reset(request):
    return _change_mine(request, session_counter_reset)
