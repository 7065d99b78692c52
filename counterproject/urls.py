from django.contrib import admin
from django.urls import include, path

from counters.api import healthz

urlpatterns = [
    # No trailing slash: the path load balancers and orchestrators expect.
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("counters.urls")),
]

handler400 = "counterproject.errors.bad_request"
handler404 = "counterproject.errors.page_not_found"
handler500 = "counterproject.errors.server_error"
