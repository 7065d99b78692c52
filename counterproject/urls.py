from django.contrib import admin
from django.urls import include, path

from counters.api import healthz

urlpatterns = [
    # No trailing slash: the path load balancers and orchestrators expect.
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("counters.urls")),
]

handler400 = "counters.views.bad_request"
handler404 = "counters.views.page_not_found"
handler500 = "counters.views.server_error"
