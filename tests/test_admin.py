"""The Django admin, as staff and as other users, with real threads."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from counters.models import GLOBAL, INT64_MAX, Counter, CounterEvent
from counters.services import counter_take

from .support import stored_value

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/counters/counter/"
TRAIL = "/admin/counters/counterevent/"


@pytest.fixture
def counters(global_counter):
    Counter.objects.filter(name=GLOBAL).update(value=10)
    alpha = Counter.objects.create(name="alpha", value=5)
    beta = Counter.objects.create(name="beta", value=-3, public=True)
    return global_counter, alpha, beta


def values() -> dict[str, int]:
    return dict(Counter.objects.values_list("name", "value"))


def run_action(client, action, counters, **data):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [c.pk for c in counters], **data},
    )


def change_value(client, counters, operation, number):
    """Apply the value form of the bulk action to ``counters``."""
    return run_action(
        client, "change_value_selected", counters,
        apply="Apply", operation=operation, number=number,
    )  # fmt: skip


def test_non_staff_users_are_sent_to_the_login_page(django_user_model, counters):
    user = django_user_model.objects.create_user("visitor", password="pw")
    client = Client()
    client.force_login(user)
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert Client().get(TRAIL).status_code == 302


def test_changelist_shows_name_value_public_and_last_change(admin_client, counters):
    html = admin_client.get(CHANGELIST).content.decode()
    for heading in ("Name", "Value", "Public", "Last change"):
        assert heading in html
    assert "Reset selected counters to 0" in html
    assert "alpha" in html and "beta" in html


def test_search_and_public_filter(admin_client, counters):
    found = admin_client.get(CHANGELIST, {"q": "alp"}).context["cl"].result_list
    assert [c.name for c in found] == ["alpha"]
    public = admin_client.get(CHANGELIST, {"public__exact": "1"}).context["cl"]
    assert sorted(c.name for c in public.result_list) == ["beta", "global"]


def test_staff_creates_a_counter_and_it_is_recorded(admin_client, admin_user, db):
    response = admin_client.post(
        "/admin/counters/counter/add/", {"name": "tickets", "public": "on"}
    )
    assert response.status_code == 302
    counter = Counter.objects.get(name="tickets")
    assert (counter.value, counter.public, counter.audit_takes) == (0, True, False)
    event = CounterEvent.objects.get(counter_name="tickets")
    assert (event.action, event.old_value, event.new_value) == ("create", None, 0)
    assert (event.source, event.actor) == ("admin", f"user:{admin_user.username}")


def test_duplicate_or_invalid_name_is_refused(admin_client, counters):
    for name, error in [
        ("alpha", "Counter with this Name already exists."),
        ("two words", "Enter a valid “slug”"),
    ]:
        response = admin_client.post("/admin/counters/counter/add/", {"name": name})
        assert response.status_code == 200
        assert error in response.content.decode()
    assert Counter.objects.count() == 3


def test_change_form_shows_the_value_read_only(admin_client, counters):
    _, alpha, _ = counters
    response = admin_client.get(f"{CHANGELIST}{alpha.pk}/change/")
    form = response.context["adminform"].form
    assert "value" not in form.fields
    assert "public" in form.fields
    assert "Change value…" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_stale_change_form_does_not_undo_takes(counters, django_user_model):
    client = Client()
    staff = django_user_model.objects.create_superuser("staff", password="pw")
    client.force_login(staff)
    _, alpha, _ = counters
    url = f"{CHANGELIST}{alpha.pk}/change/"
    # The staff member opens the form: the browser holds what it showed.
    form = client.get(url).context["adminform"].form
    shown = {name: form[name].value() for name in form.fields}

    takers = 500
    start = threading.Barrier(20, timeout=30)

    def take_many(_):
        start.wait()
        numbers = []
        for _ in range(takers // 20):
            try:
                numbers.append(counter_take("alpha"))
            finally:
                # As at the end of a request: the connection goes back to
                # the pool (16 a process), which 20 threads holding one
                # each for all their takes would overrun.
                connection.close()
        return numbers

    with ThreadPoolExecutor(max_workers=20) as pool:
        taken = [n for chunk in pool.map(take_many, range(20)) for n in chunk]
    assert sorted(taken) == list(range(6, 6 + takers))

    # …and saves an edit to another field after the takes.
    shown["public"] = True
    posted = {k: ("on" if v is True else v) for k, v in shown.items() if v is not False}
    response = client.post(url, posted)
    assert response.status_code == 302
    alpha = Counter.objects.get(name="alpha")
    assert alpha.public is True
    assert alpha.value == 5 + takers


def test_reset_action_resets_the_selected_counters(admin_client, admin_user, counters):
    _, alpha, beta = counters
    response = run_action(admin_client, "reset_selected", [alpha, beta])
    assert response.status_code == 302
    assert values() == {"global": 10, "alpha": 0, "beta": 0}
    events = CounterEvent.objects.filter(action="reset").order_by("counter_name")
    assert [(e.counter_name, e.old_value, e.new_value) for e in events] == [
        ("alpha", 5, 0),
        ("beta", -3, 0),
    ]
    assert {e.source for e in events} == {"admin"}


def test_change_value_action_asks_for_a_number_then_applies_it(admin_client, counters):
    _, alpha, beta = counters
    page = run_action(admin_client, "change_value_selected", [alpha, beta])
    assert page.status_code == 200
    assert "Change the value" in page.content.decode()
    assert stored_value("alpha") == 5

    change_value(admin_client, [alpha, beta], "increment", "7")
    assert values() == {"global": 10, "alpha": 12, "beta": 4}
    change_value(admin_client, [alpha, beta], "set", "-1")
    assert values() == {"global": 10, "alpha": -1, "beta": -1}
    change_value(admin_client, [alpha], "decrement", "4")
    assert stored_value("alpha") == -5
    actions = list(CounterEvent.objects.values_list("action", flat=True))
    assert actions == ["decrement", "set", "set", "increment", "increment"]


@pytest.mark.parametrize(
    "data, error",
    [
        ({"operation": "set", "number": "abc"}, "Enter a whole number."),
        ({"operation": "set", "number": ""}, "Enter a whole number."),
        ({"operation": "set", "number": str(INT64_MAX + 1)}, "less than or equal"),
        ({"operation": "explode", "number": "1"}, "Select a valid choice."),
    ],
)
def test_invalid_value_form_changes_nothing(admin_client, counters, data, error):
    _, alpha, beta = counters
    response = run_action(
        admin_client, "change_value_selected", [alpha, beta], apply="Apply", **data
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    assert values() == {"global": 10, "alpha": 5, "beta": -3}


def test_failure_on_one_counter_changes_none(admin_client, counters):
    _, alpha, beta = counters
    Counter.objects.filter(name="beta").update(value=INT64_MAX)
    response = change_value(admin_client, [alpha, beta], "increment", "1")
    assert response.status_code == 302
    messages = [str(m) for m in response.wsgi_request._messages]
    assert messages == [
        f"Nothing changed: Counter 'beta' is at {INT64_MAX}; adding 1 would leave "
        "the signed 64-bit range."
    ]
    assert stored_value("alpha") == 5
    assert not CounterEvent.objects.exists()


def test_value_page_for_one_counter(admin_client, counters):
    _, alpha, _ = counters
    url = f"{CHANGELIST}{alpha.pk}/value/"
    assert "Value now" in admin_client.get(url).content.decode()
    response = admin_client.post(url, {"operation": "set", "number": "99"})
    assert response.status_code == 302
    assert stored_value("alpha") == 99
    response = admin_client.post(url, {"operation": "reset"})
    assert stored_value("alpha") == 0
    response = admin_client.post(url, {"operation": "decrement", "number": "0"})
    assert "The step must be a positive integer" in " ".join(
        str(m) for m in response.wsgi_request._messages
    )
    assert stored_value("alpha") == 0


def test_global_counter_cannot_be_deleted(admin_client, counters):
    glob, alpha, _ = counters
    assert admin_client.get(f"{CHANGELIST}{glob.pk}/delete/").status_code == 403
    admin_client.post(
        CHANGELIST,
        {
            "action": "delete_selected",
            "_selected_action": [glob.pk, alpha.pk],
            "post": "yes",
        },
    )
    assert Counter.objects.filter(name=GLOBAL).exists()


def test_deleting_a_counter_is_recorded_and_the_trail_outlives_it(
    admin_client, counters
):
    _, alpha, _ = counters
    response = admin_client.post(f"{CHANGELIST}{alpha.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Counter.objects.filter(name="alpha").exists()
    event = CounterEvent.objects.get(counter_name="alpha")
    assert (event.action, event.old_value, event.new_value) == ("delete", 5, None)
    trail = admin_client.get(TRAIL, {"counter_name": "alpha"})
    assert [e.action for e in trail.context["cl"].result_list] == ["delete"]


def test_audit_trail_is_read_only(admin_client, counters):
    run_action(admin_client, "reset_selected", counters[1:2])
    event = CounterEvent.objects.get()
    assert admin_client.get(f"{TRAIL}add/").status_code == 403
    assert admin_client.post(f"{TRAIL}{event.pk}/change/", {}).status_code == 403
    assert admin_client.get(f"{TRAIL}{event.pk}/delete/").status_code == 403
    html = admin_client.get(f"{TRAIL}{event.pk}/change/").content.decode()
    assert 'type="submit"' not in html.split('id="content"')[1].split("</form>")[0]


def test_audit_trail_filters_newest_first(admin_client, counters):
    _, alpha, beta = counters
    run_action(admin_client, "reset_selected", [alpha])
    run_action(admin_client, "reset_selected", [beta])
    change_value(admin_client, [alpha], "set", "3")
    rows = admin_client.get(TRAIL, {"counter_name": "alpha"}).context["cl"].result_list
    assert [(e.action, e.new_value) for e in rows] == [("set", 3), ("reset", 0)]
    rows = admin_client.get(TRAIL, {"source__exact": "cli"}).context["cl"].result_list
    assert list(rows) == []


@pytest.mark.postgresql  # generate_series and PostgreSQL's plans
def test_audit_trail_stays_quick_with_many_entries(
    admin_client, counters, django_assert_max_num_queries
):
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO counters_counterevent
                (counter_name, action, old_value, new_value, source, actor,
                 created_at)
            SELECT 'c' || (i % 50), 'take', i - 1, i, 'api', 'ip:127.0.0.1', now()
            FROM generate_series(1, 300000) AS i
            """
        )
        cursor.execute("ANALYZE counters_counterevent")
    with django_assert_max_num_queries(12):
        response = admin_client.get(
            TRAIL, {"counter_name": "c7", "source__exact": "api"}
        )
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 100
    with django_assert_max_num_queries(12):
        assert admin_client.get(TRAIL, {"p": "3"}).status_code == 200

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN SELECT * FROM counters_counterevent WHERE counter_name = 'c7' "
            "ORDER BY id DESC LIMIT 100"
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
    # Newest first is a walk down an index: no scan of the table, no sort.
    assert "Index Scan" in plan
    assert "Seq Scan" not in plan and "Sort" not in plan


def test_each_admin_change_is_logged_once_committed(
    admin_client, admin_user, counters, caplog, django_capture_on_commit_callbacks
):
    _, alpha, beta = counters
    with caplog.at_level("INFO", logger="counters.services"):
        # Logged on commit: a batch that fails logs nothing.
        Counter.objects.filter(name="beta").update(value=INT64_MAX)
        with django_capture_on_commit_callbacks(execute=True):
            change_value(admin_client, [alpha, beta], "increment", "1")
        assert caplog.records == []
        Counter.objects.filter(name="beta").update(value=-3)
        with django_capture_on_commit_callbacks(execute=True):
            run_action(admin_client, "reset_selected", [alpha, beta])
    assert [r.getMessage() for r in caplog.records] == [
        f"counter alpha reset: 5 -> 0 by user:{admin_user.username} via admin",
        f"counter beta reset: -3 -> 0 by user:{admin_user.username} via admin",
    ]


def test_value_page_of_a_missing_or_malformed_id_is_a_404(admin_client, counters):
    assert admin_client.get(f"{CHANGELIST}abc/value/").status_code == 404
    assert admin_client.get(f"{CHANGELIST}999999/value/").status_code == 404


def test_option_changes_are_recorded_and_bump_the_last_change(
    admin_client, admin_user, counters
):
    _, alpha, _ = counters
    response = admin_client.post(
        f"{CHANGELIST}{alpha.pk}/change/", {"public": "on", "audit_takes": "on"}
    )
    assert response.status_code == 302
    changed = Counter.objects.get(name="alpha")
    assert (changed.public, changed.audit_takes, changed.value) == (True, True, 5)
    assert changed.updated_at > alpha.updated_at
    who = f"user:{admin_user.username}"
    assert list(
        CounterEvent.objects.order_by("id").values_list(
            "counter_name", "action", "old_value", "new_value", "source", "actor"
        )
    ) == [
        ("alpha", "public", 0, 1, "admin", who),
        ("alpha", "audit", 0, 1, "admin", who),
    ]
    admin_client.post(f"{CHANGELIST}{alpha.pk}/change/", {"audit_takes": "on"})
    last = CounterEvent.objects.first()
    assert (last.action, last.old_value, last.new_value) == ("public", 1, 0)


@pytest.mark.parametrize("number", ["5.0", " 5", "5 ", "1_0", "\u0665", "+", "0x5"])
def test_value_form_takes_only_a_sign_and_ascii_digits(admin_client, counters, number):
    _, alpha, beta = counters
    response = change_value(admin_client, [alpha, beta], "set", number)
    assert response.status_code == 200
    assert "Enter a whole number." in response.content.decode()
    assert values() == {"global": 10, "alpha": 5, "beta": -3}


def test_value_form_takes_a_signed_number(admin_client, counters):
    _, alpha, _ = counters
    change_value(admin_client, [alpha], "set", "+7")
    change_value(admin_client, [alpha], "decrement", "-2")
    assert stored_value("alpha") == 7
    messages = " ".join(
        str(m) for m in admin_client.get(CHANGELIST).context["messages"]
    )
    assert "increment by 2 instead" in messages


def test_audit_trail_filter_reads_no_distinct_names(admin_client, counters):
    run_action(admin_client, "reset_selected", counters[1:])
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(TRAIL)
    assert not [q["sql"] for q in queries if "DISTINCT" in q["sql"].upper()]
    choices = [c["display"] for c in response.context["cl"].filter_specs[2].choices(
        response.context["cl"])]  # fmt: skip
    assert choices == ["All", "alpha", "beta", "global"]


# --- Races between staff members (#12) ---------------------------------------


def staff_clients(django_user_model, count: int) -> list[Client]:
    """Return ``count`` clients, each logged in as a staff member of its own."""
    clients = []
    for number in range(count):
        user = django_user_model.objects.create_superuser(f"staff{number}", "", "pw")
        client = Client()
        client.force_login(user)
        clients.append(client)
    return clients


def at_once(clients, request) -> list:
    """Send ``request(client)`` from every client at once; return the answers."""
    start = threading.Barrier(len(clients), timeout=30)

    def send(client):
        start.wait()
        try:
            return request(client)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return list(pool.map(send, clients))


def flashed(response) -> str:
    """Return the message this response added (earlier ones wait unread)."""
    added = [str(m) for m in response.wsgi_request._messages]
    return added[-1] if added else ""


ROUNDS = 5


@pytest.mark.django_db(transaction=True)
def test_staff_racing_to_add_one_name_get_one_counter(django_user_model):
    clients = staff_clients(django_user_model, 2)
    for round_ in range(ROUNDS):
        name = f"race-{round_}"
        answers = at_once(
            clients, lambda c, name=name: c.post(f"{CHANGELIST}add/", {"name": name})
        )
        # The Client raises on a 500; each answer is a redirect or the form.
        assert sorted(a.status_code for a in answers) in ([200, 302], [302, 302])
        refused = [
            a for a in answers
            if a.status_code == 200 or "Nothing changed" in flashed(a)
        ]  # fmt: skip
        assert len(refused) == 1
        text = refused[0].content.decode() + flashed(refused[0])
        assert (
            "Counter with this Name already exists." in text
            or f"A counter named '{name}' already exists." in text
        )
        assert Counter.objects.filter(name=name).count() == 1
        assert CounterEvent.objects.filter(counter_name=name).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_delete_racing_a_delete_ends_in_a_message(django_user_model):
    clients = staff_clients(django_user_model, 2)
    for round_ in range(ROUNDS):
        counter = Counter.objects.create(name=f"doomed-{round_}", value=round_)
        answers = at_once(
            clients,
            lambda c, url=f"{CHANGELIST}{counter.pk}/delete/": c.post(
                url, {"post": "yes"}
            ),
        )
        assert [a.status_code for a in answers] == [302, 302]
        messages = [flashed(a) for a in answers]
        assert sum("deleted successfully" in m for m in messages) == 1, messages
        assert any(
            f"There is no counter named '{counter.name}'" in m or "doesn’t exist" in m
            for m in messages
        ), messages
        assert not Counter.objects.filter(pk=counter.pk).exists()
        events = CounterEvent.objects.filter(counter_name=counter.name)
        assert [(e.action, e.old_value) for e in events] == [("delete", round_)]


@pytest.mark.django_db(transaction=True)
def test_an_option_change_racing_takes_loses_none(counters, django_user_model):
    [staff] = staff_clients(django_user_model, 1)
    _, alpha, _ = counters
    takers, each = 20, 25
    start = threading.Barrier(takers + 1, timeout=30)

    def work(index):
        start.wait()
        try:
            if index == takers:
                return staff.post(
                    f"{CHANGELIST}{alpha.pk}/change/", {"public": "on"}
                ).status_code
            return [counter_take("alpha") for _ in range(each)]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=takers + 1) as pool:
        results = list(pool.map(work, range(takers + 1)))

    assert results[-1] == 302
    taken = sorted(n for chunk in results[:-1] for n in chunk)
    assert taken == list(range(6, 6 + takers * each))
    after = Counter.objects.get(name="alpha")
    assert (after.value, after.public) == (5 + takers * each, True)
    assert after.updated_at > alpha.updated_at
    events = CounterEvent.objects.filter(counter_name="alpha")
    assert [(e.action, e.old_value, e.new_value) for e in events] == [("public", 0, 1)]
