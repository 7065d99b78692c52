"""
The app's URLs, in four pieces a project may include on their own, all in
the namespace ``counters``::

    from counters import urls as counters_urls

    urlpatterns = [
        # The take's page and the JSON API of named counters only:
        path("", include((counters_urls.pages + counters_urls.api, "counters"))),
    ]

``include("counters.urls")`` routes all four. The visitor's own counter
(``visitor_pages``, ``visitor_api``) needs the app's session engine
(``SESSION_ENGINE = "counters.sessions"``); a system check says so.
"""

from django.urls import path

from . import api as json_views
from . import views

app_name = "counters"

pages = [
    path("", views.index, name="index"),
    path("take/", views.take, name="take"),
]
visitor_pages = [
    path("me/", views.me, name="me"),
    path("me/increment/", views.me_increment, name="me-increment"),
    path("me/decrement/", views.me_decrement, name="me-decrement"),
    path("me/reset/", views.me_reset, name="me-reset"),
]
api = [
    path("api/counters/<slug:name>/", json_views.counter_detail, name="api-detail"),
    path(
        "api/counters/<slug:name>/increment/",
        json_views.counter_take_number,
        name="api-take",
    ),
]
visitor_api = [
    path("api/me/", json_views.me_detail, name="api-me"),
    path("api/me/increment/", json_views.me_increment, name="api-me-increment"),
    path("api/me/decrement/", json_views.me_decrement, name="api-me-decrement"),
    path("api/me/reset/", json_views.me_reset, name="api-me-reset"),
]

urlpatterns = pages + visitor_pages + api + visitor_api
