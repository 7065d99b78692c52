"""HTML pages."""

from django.contrib import messages
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.defaults import page_not_found as html_page_not_found

from .exceptions import CounterNotFound
from .models import GLOBAL
from .selectors import counter_get
from .services import counter_take


@require_GET
def index(request):
    try:
        counter = counter_get(GLOBAL)
    except CounterNotFound as exc:
        raise Http404(str(exc)) from exc
    return render(request, "counters/index.html", {"counter": counter})


@require_POST
def take(request):
    number = counter_take(GLOBAL)
    messages.success(request, f"Your number is {number}")
    return redirect("counters:index")


def page_not_found(request, exception):
    """Answer an unknown URL with JSON under /api/ and with a page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": f"There is nothing at {request.path}."}, status=404
        )
    return html_page_not_found(request, exception)
