from django.urls import path

from . import api, views

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
]
