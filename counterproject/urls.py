from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from counterproject.metrics import metrics_view
from counters.api import healthz

urlpatterns = [
    # No trailing slash: the path load balancers and orchestrators expect.
    path("healthz", healthz, name="healthz"),
    # Prometheus' scrapes, for the addresses and token configured (#25).
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("counters.urls")),
]
if settings.COUNTERS_NAIVE_DEMO:
    # The naive counters, a demonstration apart from the product (#26).
    urlpatterns.append(path("", include("naive_demo.urls")))

handler400 = "counterproject.errors.bad_request"
handler404 = "counterproject.errors.page_not_found"
handler500 = "counterproject.errors.server_error"
