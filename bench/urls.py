from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from sequences import get_next_value

from bench import sql_take
from counterproject.urls import handler404  # noqa: F401
from counterproject.urls import urlpatterns as product_urlpatterns


@csrf_exempt
@require_POST
def noop(request):
    """Return a small JSON body: the framework's own ceiling."""
    return JsonResponse({"value": 0})


@csrf_exempt
@require_POST
async def anoop(request):
    """The no-op as an asynchronous view: ASGI's ceiling without a thread."""
    return JsonResponse({"value": 0})


@csrf_exempt
@require_POST
def sequence(request):
    """Take a number with django-sequences, the closest peer."""
    return JsonResponse({"value": get_next_value("bench")})


urlpatterns = [
    path("bench/noop/", noop),
    path("bench/noop-async/", anoop),
    path("bench/sequences/", sequence),
    path("bench/sql/<slug:name>/increment/", sql_take.take),
    *product_urlpatterns,
]
