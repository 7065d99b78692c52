from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from sequences import get_next_value

from counterproject.urls import handler404  # noqa: F401
from counterproject.urls import urlpatterns as product_urlpatterns


@csrf_exempt
@require_POST
def noop(request):
    """Return a small JSON body: the framework's own ceiling."""
    return JsonResponse({"value": 0})


@csrf_exempt
@require_POST
def sequence(request):
    """Take a number with django-sequences, the closest peer."""
    return JsonResponse({"value": get_next_value("bench")})


urlpatterns = [
    path("bench/noop/", noop),
    path("bench/sequences/", sequence),
    *product_urlpatterns,
]
