from django.urls import path

from . import api, naive, views

app_name = "counters"

urlpatterns = [
    path("", views.index, name="index"),
    path("take/", views.take, name="take"),
    path("me/", views.me, name="me"),
    path("me/increment/", views.me_increment, name="me-increment"),
    path("me/decrement/", views.me_decrement, name="me-decrement"),
    path("me/reset/", views.me_reset, name="me-reset"),
    path("api/counters/<slug:name>/", api.counter_detail, name="api-detail"),
    path(
        "api/counters/<slug:name>/increment/",
        api.counter_take_number,
        name="api-take",
    ),
    path("api/me/", api.me_detail, name="api-me"),
    path("api/me/increment/", api.me_increment, name="api-me-increment"),
    path("api/me/decrement/", api.me_decrement, name="api-me-decrement"),
    path("api/me/reset/", api.me_reset, name="api-me-reset"),
    # Demonstrations, served only with COUNTERS_NAIVE_DEMO=1 (#5, #13).
    path("api/naive/increment/", naive.increment, name="api-naive-increment"),
    path(
        "api/naive/dict/increment/",
        naive.dict_increment,
        name="api-naive-dict-increment",
    ),
    path(
        "api/naive/cache/increment/",
        naive.cache_increment,
        name="api-naive-cache-increment",
    ),
    path(
        "api/naive/cache-incr/increment/",
        naive.cache_incr_increment,
        name="api-naive-cache-incr-increment",
    ),
    path(
        "api/naive/manager/increment/",
        naive.manager_increment,
        name="api-naive-manager-increment",
    ),
    path(
        "api/naive/session/increment/",
        naive.session_increment,
        name="api-naive-session-increment",
    ),
]
