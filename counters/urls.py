from django.urls import path

from . import api, views

app_name = "counters"

urlpatterns = [
    path("", views.index, name="index"),
    path("take/", views.take, name="take"),
    path("api/counters/<slug:name>/", api.counter_detail, name="api-detail"),
    path(
        "api/counters/<slug:name>/increment/",
        api.counter_increment,
        name="api-increment",
    ),
]
