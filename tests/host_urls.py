"""A host project's URLconf that routes the app's pieces without sessions."""

from django.urls import include, path

from counters import urls as counters_urls

urlpatterns = [
    path("", include((counters_urls.pages + counters_urls.api, "counters"))),
]
