"""
The pages in a real browser: headless Chromium against gunicorn on the test
PostgreSQL (and Redis), driven as a visitor and as staff would.

Screenshots go to ``test-artifacts/screenshots/``; a failing test leaves one
of each of its browsers there, as ``failed-<test>-<n>.png``.
"""

import contextlib

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

from counters.models import GLOBAL, Counter

from .browser import (
    DESKTOP,
    PHONE,
    button,
    chromium,
    flashes,
    foreign_urls,
    navigate,
    new_profile,
    save_screenshot,
    shown_value,
    submit,
)
from .support import database_url, stored_value, unavailable

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-staff-password-for-tests"


@pytest.fixture
def site(global_counter, serve):
    """Serve the project on the test PostgreSQL; return its base URL."""
    with serve({"DATABASE_URL": database_url()}, workers=2, threads=4) as base_url:
        yield base_url


@pytest.fixture
def site_with_redis(global_counter, redis_server, serve):
    """Serve the project on the test PostgreSQL with sessions cached in Redis."""
    env = {"DATABASE_URL": database_url(), "REDIS_URL": redis_server.url}
    with serve(env, workers=2, threads=4) as base_url:
        yield base_url


@pytest.fixture
def browsers(request, tmp_path):
    """
    Return a function that opens a browser with a fresh profile of its own.

    If the test fails, each browser's screen at that moment is saved first.
    """
    opened = []

    def open_browser(*, size: tuple[int, int] = DESKTOP):
        try:
            driver = chromium(new_profile(tmp_path), size=size)
        except Exception as exc:  # noqa: BLE001 - any failure means "no browser"
            # Selenium's message ends with chromedriver's native stack trace.
            reason = " ".join(str(exc).split("Stacktrace:")[0].split())
            unavailable(f"Chromium could not start: {reason}")
        opened.append(driver)
        return driver

    yield open_browser
    report = getattr(request.node, "rep_call", None)
    try:
        if report is not None and report.failed:
            for number, driver in enumerate(opened, 1):
                # A browser that died cannot be photographed; the failure
                # itself is what the report must show.
                with contextlib.suppress(WebDriverException):
                    save_screenshot(driver, f"failed-{request.node.name}-{number}")
    finally:
        for driver in opened:
            driver.quit()


@pytest.fixture
def browser(browsers):
    """Return one desktop-sized browser."""
    return browsers()


def take_a_number(driver) -> None:
    submit(driver, button(driver, "Take a number"))


def test_taking_a_number_flashes_it_once_and_a_reload_takes_none(site, browser):
    Counter.objects.filter(name=GLOBAL).update(value=41)
    browser.get(f"{site}/")
    assert (shown_value(browser), flashes(browser)) == ("41", [])

    take_a_number(browser)
    assert flashes(browser) == ["Your number is 42"]
    assert browser.page_source.count("Your number is") == 1
    assert shown_value(browser) == "42"
    save_screenshot(browser, "home")

    browser.refresh()
    assert flashes(browser) == []
    assert "Your number is" not in browser.page_source
    assert shown_value(browser) == "42"
    assert stored_value() == 42


def test_pages_fit_a_phone(site, browsers):
    phone = browsers(size=PHONE)
    phone.get(f"{site}/")
    take_a_number(phone)
    assert flashes(phone) == ["Your number is 1"]
    save_screenshot(phone, "home-phone")

    assert_fits_a_phone(phone, ["Take a number"])

    phone.get(f"{site}/me/")
    submit(phone, button(phone, "Subtract 1"))
    assert flashes(phone) == ["Your counter is now -1"]
    save_screenshot(phone, "me-phone")
    assert_fits_a_phone(phone, ["Add 1", "Subtract 1", "Reset to 0"])


def assert_fits_a_phone(phone, labels: list[str]) -> None:
    """Check for sideways scrolling and for buttons too small or off screen."""
    width, height = PHONE
    assert phone.execute_script("return window.innerWidth") == width
    assert phone.execute_script("return document.documentElement.scrollWidth") <= width
    for label in labels:
        rect = button(phone, label).rect
        assert rect["height"] >= 44, f"{label!r} is a thumb-sized target"
        assert 0 <= rect["x"] and rect["x"] + rect["width"] <= width, label
        assert rect["y"] + rect["height"] <= height, f"{label!r} on the first screen"


def test_two_browsers_keep_separate_counters(site_with_redis, browsers):
    alice, bob = browsers(), browsers()
    for driver in (alice, bob):
        driver.get(f"{site_with_redis}/me/")
        assert shown_value(driver) == "0"

    for _ in range(3):
        submit(alice, button(alice, "Add 1"))
    submit(bob, button(bob, "Subtract 1"))

    assert flashes(alice) == ["Your counter is now 3"]
    assert flashes(bob) == ["Your counter is now -1"]
    save_screenshot(alice, "me")
    for driver, value in ((alice, "3"), (bob, "-1")):
        driver.refresh()
        assert (shown_value(driver), flashes(driver)) == (value, [])
    sessions = {d.get_cookie("sessionid")["value"] for d in (alice, bob)}
    assert len(sessions) == 2

    submit(alice, button(alice, "Reset to 0"))
    assert (shown_value(alice), flashes(alice)) == ("0", ["Your counter is now 0"])
    bob.refresh()
    assert shown_value(bob) == "-1"


def test_staff_resets_the_global_counter_in_the_admin(site, browser, django_user_model):
    django_user_model.objects.create_superuser("staff", "staff@example.com", PASSWORD)
    browser.get(f"{site}/")
    for _ in range(3):
        take_a_number(browser)
    assert shown_value(browser) == "3"

    browser.get(f"{site}/admin/counters/counter/")
    assert "/admin/login/" in browser.current_url
    browser.find_element(By.ID, "id_username").send_keys("staff")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    log_in = browser.find_element(By.CSS_SELECTOR, '#login-form [type="submit"]')
    submit(browser, log_in)
    assert browser.current_url == f"{site}/admin/counters/counter/"

    row = browser.find_element(By.XPATH, '//tr[.//a[normalize-space()="global"]]')
    assert row.find_element(By.CSS_SELECTOR, "td.field-value").text == "3"
    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_visible_text(
        "Reset selected counters to 0"
    )
    # Django 6.1 labels the admin's "Go" button "Run".
    submit(browser, browser.find_element(By.CSS_SELECTOR, 'button[name="index"]'))

    messages = browser.find_elements(By.CSS_SELECTOR, ".messagelist li")
    assert [m.text for m in messages] == ["Reset to 0: global = 0."]
    row = browser.find_element(By.XPATH, '//tr[.//a[normalize-space()="global"]]')
    assert row.find_element(By.CSS_SELECTOR, "td.field-value").text == "0"
    assert foreign_urls(browser) == []
    save_screenshot(browser, "admin-counters")

    browser.get(f"{site}/")
    assert shown_value(browser) == "0"
    assert stored_value() == 0


FOCUS_STYLE = """
const style = getComputedStyle(arguments[0]);
return [style.outlineStyle, parseFloat(style.outlineWidth)];
"""


def press(driver, key: str) -> None:
    ActionChains(driver).send_keys(key).perform()


def focused(driver):
    """Return the focused element and check that its focus can be seen."""
    element = driver.switch_to.active_element
    outline, width = driver.execute_script(FOCUS_STYLE, element)
    assert outline != "none" and width >= 2, (
        f"{element.accessible_name!r} shows no focus"
    )
    assert element.is_displayed()
    return element


def test_keyboard_alone_takes_a_number(site, browser):
    browser.get(f"{site}/")
    press(browser, Keys.TAB)
    skip = focused(browser)
    assert skip.accessible_name == "Skip to content"
    assert skip.rect["x"] >= 0 and skip.rect["y"] >= 0, "the skip link shows"

    order = [skip.accessible_name]
    while order[-1] != "Take a number" and len(order) < 10:
        press(browser, Keys.TAB)
        order.append(focused(browser).accessible_name)
    assert order == [
        "Skip to content",
        "counterproject",
        "Global counter",
        "Your counter",
        "Take a number",
    ]
    save_screenshot(browser, "home-keyboard-focus")

    navigate(browser, lambda: press(browser, Keys.ENTER))
    assert flashes(browser) == ["Your number is 1"]
    assert shown_value(browser) == "1"


def test_skip_link_jumps_past_the_navigation(site, browser):
    browser.get(f"{site}/")
    press(browser, Keys.TAB)
    save_screenshot(browser, "home-skip-link")
    press(browser, Keys.ENTER)
    assert browser.current_url == f"{site}/#main"
    press(browser, Keys.TAB)
    assert focused(browser).accessible_name == "Take a number"


# The contrast ratio of every text node's colour against the background it
# is drawn on (WCAG 2 relative luminance; opaque backgrounds assumed).
CONTRAST = """
const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
const luminance = (c) => {
  const [r, g, b] = rgb(c).slice(0, 3).map((v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const background = (element) => {
  for (let e = element; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    if (rgb(c).length < 4 || rgb(c)[3] > 0) return c;
  }
  return "rgb(255, 255, 255)";
};
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const found = [];
while (walker.nextNode()) {
  const element = walker.currentNode.parentElement;
  const text = walker.currentNode.textContent.trim();
  if (!text || !element.checkVisibility()) continue;
  const style = getComputedStyle(element);
  const [a, b] = [luminance(style.color), luminance(background(element))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const size = parseFloat(style.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
  found.push([text, Math.round(ratio * 100) / 100, large ? 3 : 4.5]);
}
return found;
"""


@pytest.mark.parametrize("path, label", [("/", "Take a number"), ("/me/", "Add 1")])
def test_pages_are_labelled_legible_and_self_contained(site, browser, path, label):
    browser.get(f"{site}{path}")
    submit(browser, button(browser, label))  # a flash message too
    assert len(flashes(browser)) == 1
    for control in browser.find_elements(By.CSS_SELECTOR, "a, button"):
        assert control.accessible_name.strip(), control.get_attribute("outerHTML")
    current = browser.find_elements(By.CSS_SELECTOR, 'nav [aria-current="page"]')
    assert [link.get_attribute("pathname") for link in current] == [path]

    low = [
        (text, ratio, needed)
        for text, ratio, needed in browser.execute_script(CONTRAST)
        if ratio < needed
    ]
    assert low == [], "text with too little contrast"
    # The flash is announced: it sits in a live region.
    assert browser.find_elements(By.CSS_SELECTOR, '[aria-live="polite"] .message')
    assert foreign_urls(browser) == []


def test_admin_login_page_is_self_contained(site, browser):
    browser.get(f"{site}/admin/login/")
    assert foreign_urls(browser) == []
