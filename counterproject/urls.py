from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("counters.urls")),
]

handler404 = "counters.views.page_not_found"
