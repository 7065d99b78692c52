"""The pages a browser sees: the take, the own counter, errors, static files."""

import re

import pytest
import requests
from django.test import Client

from counters.models import INT64_MAX, Counter, CounterEvent

from .support import database_url, stored_value

pytestmark = pytest.mark.django_db


def test_home_shows_the_value_and_a_take_form(client, global_counter):
    Counter.objects.filter(name="global").update(value=41)
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="value">41<' in html
    assert 'method="post"' in html and 'action="/take/"' in html
    assert "csrfmiddlewaretoken" in html
    assert "Take a number" in html


def test_take_redirects_and_flashes_the_number_once(client, global_counter):
    response = client.post("/take/")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert stored_value() == 1

    page = client.get("/").content.decode()
    assert "Your number is 1" in page

    reload = client.get("/").content.decode()
    assert "Your number is" not in reload
    assert 'data-testid="value">1<' in reload
    assert stored_value() == 1


def test_reload_shows_no_second_flash(client, global_counter):
    client.post("/take/")
    client.post("/take/")
    assert "Your number is 2" in client.get("/").content.decode()
    assert "Your number is" not in client.get("/").content.decode()


def test_two_visitors_get_their_own_numbers(global_counter):
    alice, bob = Client(), Client()
    alice.post("/take/")
    bob.post("/take/")
    assert "Your number is 1" in alice.get("/").content.decode()
    assert "Your number is 2" in bob.get("/").content.decode()


def test_get_never_takes_a_number(client, global_counter):
    assert client.get("/take/").status_code == 405
    client.get("/")
    assert stored_value() == 0


def test_take_needs_the_csrf_token(global_counter):
    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/take/").status_code == 403
    assert stored_value() == 0

    page = strict.get("/")
    token = page.context["csrf_token"]
    assert strict.post("/take/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert stored_value() == 1


def test_home_without_the_global_counter_is_a_404(client, db):
    Counter.objects.filter(name="global").delete()
    assert client.get("/").status_code == 404


def test_stylesheet_is_served_by_the_project(client, global_counter):
    html = client.get("/").content.decode()
    assert 'href="/static/counters/site.' in html
    assert "http://" not in html and "https://" not in html


def test_web_take_records_who_got_the_number(client, global_counter):
    client.post("/take/")
    event = CounterEvent.objects.get(counter_name="global", new_value=1)
    assert (event.action, event.source) == ("take", "web")
    session_key = client.cookies["sessionid"].value
    # The trail names the visitor's session without storing its secret key.
    assert event.actor.startswith("session:")
    assert session_key not in event.actor
    client.post("/take/")
    second = CounterEvent.objects.get(counter_name="global", new_value=2)
    assert second.actor == event.actor


def test_a_take_past_the_largest_value_is_a_message_not_a_500(client, global_counter):
    Counter.objects.filter(name="global").update(value=INT64_MAX)
    response = client.post("/take/")
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/").content.decode()
    assert "No number was taken: Counter &#x27;global&#x27; is at" in page
    assert stored_value() == INT64_MAX
    assert not CounterEvent.objects.exists()


def test_a_take_without_the_global_counter_is_a_message_not_a_500(client, db):
    Counter.objects.filter(name="global").delete()
    response = client.post("/take/")
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 404
    html = page.content.decode()
    assert "No number was taken: There is no counter named" in html
    assert not Counter.objects.exists()


@pytest.mark.django_db
def test_unknown_pages_are_404s_in_html():
    response = Client().get("/no/such/page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"[\w.]+ "
)


@pytest.mark.django_db(transaction=True)
def test_static_files_are_hashed_and_compressed_under_gunicorn(
    postgres, global_counter, serve, tmp_path
):
    # Stopped as in production (SIGTERM): its shutdown lines are checked too.
    # gunicorn's quick stop (SIGINT) leaves a gevent worker's traceback from
    # Python's threading shutdown in the log.
    with serve(
        {"DATABASE_URL": database_url()}, workers=1, threads=2, graceful=True
    ) as url:
        page = requests.get(url, timeout=10).text
        css = re.search(r'href="(/static/counters/site\.[0-9a-f]{12}\.css)"', page)
        assert css, page
        login = requests.get(f"{url}/admin/login/", timeout=10).text
        admin_css = re.search(
            r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login
        )
        assert admin_css, login
        for path in (css.group(1), admin_css.group(1)):
            response = requests.get(
                f"{url}{path}", timeout=10, headers={"Accept-Encoding": "gzip"}
            )
            assert response.status_code == 200
            assert response.headers["Content-Encoding"] == "gzip"
            assert "max-age=315360000" in response.headers["Cache-Control"]

    # gunicorn's own lines and its access log share the project's format.
    lines = (tmp_path / "gunicorn.log").read_text().splitlines()
    assert any(" INFO gunicorn.access " in line for line in lines)
    assert any(" INFO gunicorn.error Listening at" in line for line in lines)
    assert [line for line in lines if not LOG_LINE.match(line)] == []


def test_a_project_that_routes_no_visitor_counter_gets_pages_without_its_link(
    settings, global_counter
):
    settings.ROOT_URLCONF = "tests.host_urls"  # the take's page and the API
    html = Client().get("/").content.decode()
    assert "Take a number" in html
    assert "Your counter" not in html
    assert 'href="/me/"' not in html
    assert Client().get("/me/").status_code == 404
