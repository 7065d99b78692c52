"""
DATABASE_URL as a DATABASES entry, the module on its own.

tests/test_settings.py and tests/test_pool_settings.py check what an operator
meets (one line from manage.py and gunicorn); these check the edges of the
URL's parts: host lists, ports, the pool's two sources, libpq's parameters.
"""

import pytest
from django.core.exceptions import ImproperlyConfigured

from counterproject.database_url import (
    POSTGRES_OPTIONS,
    PROJECT_DIR,
    SESSION_ATTRS,
    SQLITE_OPTIONS,
    database_from_url,
    split_hosts,
)
from counterproject.settings import BASE_DIR

SET_URL = "Set the DATABASE_URL environment variable"
SECONDS = "seconds above 0 and at most 86400 (such as 2.5)"


@pytest.fixture(autouse=True)
def no_pool_variables(monkeypatch):
    """Read the pool from the URL alone unless a test sets a variable."""
    for variable in ("SIZE", "TIMEOUT", "MAX_AGE"):
        monkeypatch.delenv(f"DATABASE_POOL_{variable}", raising=False)


def refused(url: str) -> str:
    """Return the message ``database_from_url`` refuses ``url`` with."""
    with pytest.raises(ImproperlyConfigured) as excinfo:
        database_from_url(url)
    return str(excinfo.value)


# --- Host lists --------------------------------------------------------------


def test_a_url_with_one_host_comes_back_unchanged():
    url = "postgres://app:pw@db.example:5432/counters?sslmode=require"
    assert split_hosts(url) == (url, [])


def test_a_host_list_is_taken_out_and_the_rest_of_the_url_kept():
    url = "postgres://app:p%40ss@h1:5432,[fe80::1]:5433,db%2Dtwo/counters?x=1"
    assert split_hosts(url) == (
        "postgres://app:p%40ss@hosts/counters?x=1",
        [("h1", "5432"), ("fe80::1", "5433"), ("db-two", "")],
    )


def test_an_at_sign_in_the_password_does_not_split_the_hosts():
    rest, hosts = split_hosts("postgres://app:a@b@h1,h2/counters")
    assert rest == "postgres://app:a@b@hosts/counters"
    assert hosts == [("h1", ""), ("h2", "")]


def test_the_credentials_of_a_multi_host_url_are_decoded():
    config = database_from_url("postgres://app:p%40ss@h1,h2:5433/counters")
    assert (config["USER"], config["PASSWORD"]) == ("app", "p@ss")
    # The first host has libpq's default port: an empty entry in the list.
    assert (config["HOST"], config["PORT"]) == ("h1,h2", ",5433")


@pytest.mark.parametrize("port", ["1", "65535"])
def test_ports_at_either_end_of_the_range_are_taken(port):
    config = database_from_url(f"postgres://app@h1:{port},h2:{port}/counters")
    assert config["PORT"] == f"{port},{port}"


def test_a_trailing_colon_leaves_the_default_port():
    assert split_hosts("postgres://app@h1:,h2/counters")[1] == [("h1", ""), ("h2", "")]


def test_port_zero_is_refused():
    assert refused("postgres://app@h1:0,h2/counters") == (
        f"{SET_URL} with host:port pairs separated by commas, each port from 1 "
        "to 65535; 'h1:0' is not one."
    )


def test_a_host_list_is_refused_on_sqlite():
    assert refused("sqlite://a,b/db.sqlite3") == (
        f"{SET_URL} to postgres://user:password@host:port/name or sqlite:///path."
    )


def test_a_url_no_parser_takes_is_left_to_be_refused_with_the_form():
    url = "postgres://[db/counters"
    assert split_hosts(url) == (url, [])
    assert refused(url).endswith(" or sqlite:///path.")


# --- The pool: from the environment or the URL -------------------------------


def test_the_url_and_a_variable_may_spell_the_same_value_differently(monkeypatch):
    monkeypatch.setenv("DATABASE_POOL_SIZE", "8")
    monkeypatch.setenv("DATABASE_POOL_TIMEOUT", "2.5")
    options = database_from_url(
        "postgres://app@db/counters?pool_size=08&pool_timeout=2.50"
    )["OPTIONS"]
    assert (options["pool_size"], options["pool_timeout"]) == (8, 2.5)


@pytest.mark.parametrize(
    "variable, key",
    [
        ("DATABASE_POOL_TIMEOUT", "pool_timeout"),
        ("DATABASE_POOL_MAX_AGE", "pool_max_age"),
    ],
)
def test_seconds_set_to_different_values_in_both_places_are_refused(
    monkeypatch, variable, key
):
    monkeypatch.setenv(variable, "30")
    assert refused(f"postgres://app@db/counters?{key}=2.5") == (
        f"Set {variable} or DATABASE_URL's {key}, not both to different values "
        "('30' and '2.5')."
    )


def test_a_bad_variable_is_named_even_when_the_url_sets_the_option(monkeypatch):
    monkeypatch.setenv("DATABASE_POOL_SIZE", "0")
    assert refused("postgres://app@db/counters?pool_size=4") == (
        "Set DATABASE_POOL_SIZE to a whole number, 1 or more, not '0'."
    )


def test_a_blank_variable_leaves_the_option_to_the_url(monkeypatch):
    monkeypatch.setenv("DATABASE_POOL_SIZE", "  ")
    options = database_from_url("postgres://app@db/counters?pool_size=4")["OPTIONS"]
    assert options["pool_size"] == 4


def test_a_bad_pool_option_in_a_sqlite_url_is_refused():
    assert refused("sqlite:///db.sqlite3?pool_max_age=0") == (
        f"Set DATABASE_URL's pool_max_age to {SECONDS}, not '0'."
    )


# --- libpq's parameters -----------------------------------------------------


@pytest.mark.parametrize("attrs", sorted(SESSION_ATTRS))
def test_every_target_session_attrs_libpq_knows_is_taken(attrs):
    url = f"postgres://app@db/counters?target_session_attrs={attrs}"
    assert database_from_url(url)["OPTIONS"]["target_session_attrs"] == attrs


def test_target_session_attrs_is_refused_in_another_case():
    assert refused("postgres://app@db/counters?target_session_attrs=Primary") == (
        f"{SET_URL} with target_session_attrs one of any, prefer-standby, "
        "primary, read-only, read-write, standby, not 'Primary'."
    )


@pytest.mark.parametrize("value, shown", [("2.5", "'2.5'"), ("true", "True")])
def test_a_connect_timeout_not_in_whole_seconds_is_refused(value, shown):
    assert refused(f"postgres://app@db/counters?connect_timeout={value}") == (
        f"{SET_URL} with connect_timeout in whole seconds, not {shown}."
    )


def test_other_libpq_parameters_reach_the_connection():
    options = database_from_url("postgres://app@db/counters?sslmode=require")["OPTIONS"]
    assert options["sslmode"] == "require"
    assert options["tcp_user_timeout"] == POSTGRES_OPTIONS["tcp_user_timeout"]


# --- SQLite ------------------------------------------------------------------


def test_sqlite_paths_are_relative_to_the_settings_base_dir():
    # The module keeps its own copy, to import nothing from the settings.
    assert PROJECT_DIR == BASE_DIR


def test_a_sqlite_url_parameter_wins_over_the_projects_default():
    options = database_from_url("sqlite:///db.sqlite3?timeout=5")["OPTIONS"]
    assert options["timeout"] == 5
    assert options["transaction_mode"] == "IMMEDIATE"


def test_each_entry_has_options_of_its_own():
    for url, defaults in [
        ("sqlite:///db.sqlite3", SQLITE_OPTIONS),
        ("postgres://app@db/counters", POSTGRES_OPTIONS),
    ]:
        before = dict(defaults)
        database_from_url(url)["OPTIONS"]["timeout"] = 0
        assert defaults == before
        assert database_from_url(url)["OPTIONS"].get("timeout") != 0


def test_pool_options_in_a_sqlite_url_are_checked_but_not_passed_to_sqlite():
    # SQLite has no pool: sqlite3.connect() would refuse the keyword.
    options = database_from_url("sqlite:///x.sqlite3?pool_size=4")["OPTIONS"]
    assert "pool_size" not in options
    with pytest.raises(ImproperlyConfigured):
        database_from_url("sqlite:///x.sqlite3?pool_size=0")


def test_server_settings_in_the_url_keep_the_projects_own():
    config = database_from_url("postgres://u@h/n?options=-c%20statement_timeout%3D5s")
    options = config["OPTIONS"]["options"]
    # Both the project's timeouts and the URL's setting, the URL's last.
    assert options.startswith(POSTGRES_OPTIONS["options"])
    assert options.endswith("-c statement_timeout=5s")
