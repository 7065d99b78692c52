"""
The project's URLs with the naive demonstrations routed, for in-process tests
that turn the demo on (served tests set COUNTERS_NAIVE_DEMO=1 instead).
"""

from django.urls import include, path

from counterproject.urls import urlpatterns as project_urlpatterns

urlpatterns = [*project_urlpatterns, path("", include("naive_demo.urls"))]


def turn_demo_on(settings) -> None:
    """Do what COUNTERS_NAIVE_DEMO=1 does, in this process, for one test."""
    settings.COUNTERS_NAIVE_DEMO = True
    settings.ROOT_URLCONF = __name__
