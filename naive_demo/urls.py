"""The demonstrations' URLs: counterproject/urls.py includes them only with
COUNTERS_NAIVE_DEMO=1."""

from django.urls import path

from . import views

app_name = "naive_demo"

urlpatterns = [
    path("api/naive/increment/", views.increment, name="increment"),
    path("api/naive/dict/increment/", views.dict_increment, name="dict-increment"),
    path("api/naive/cache/increment/", views.cache_increment, name="cache-increment"),
    path(
        "api/naive/cache-incr/increment/",
        views.cache_incr_increment,
        name="cache-incr-increment",
    ),
    path(
        "api/naive/manager/increment/",
        views.manager_increment,
        name="manager-increment",
    ),
    path(
        "api/naive/session/increment/",
        views.session_increment,
        name="session-increment",
    ),
]
