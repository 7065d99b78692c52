"""
Headless Chromium for the end-to-end tests: launch, wait, look, save.

The browser is Debian's ``chromium`` driven by its ``chromedriver``; nothing
downloads a browser. The machines that run the suite are root in a sandbox
without internet, hence no sandbox and no background networking.
"""

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from counterproject.testing.servers import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# Every wait is bounded: a page that never comes fails its test.
WAIT = 20
DESKTOP = (1280, 900)
PHONE = (390, 844)
FLAGS = [
    "--headless=new",
    # Root cannot use Chromium's sandbox; the tests load only this project.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    # No internet: nothing may try to reach Google's services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(profile: Path, *, size: tuple[int, int] = DESKTOP) -> WebDriver:
    """Start headless Chromium with its own profile directory at ``profile``."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    width, height = size
    size_flag = f"--window-size={width},{height}"
    for flag in [*FLAGS, f"--user-data-dir={profile}", size_flag]:
        options.add_argument(flag)
    if size == PHONE:
        # A phone's viewport, touch and pixel density, so that the page's
        # viewport meta tag applies as it does on a real phone.
        metrics = {"width": width, "height": height, "pixelRatio": 2}
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    driver = webdriver.Chrome(
        service=Service(executable_path=CHROMEDRIVER), options=options
    )
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


def new_profile(parent: Path) -> Path:
    """Return a fresh, empty profile directory under ``parent``."""
    return Path(tempfile.mkdtemp(prefix="chromium-", dir=parent))


def submit(driver: WebDriver, button: WebElement) -> None:
    """Press ``button`` and wait until the page it leads to has loaded."""
    navigate(driver, button.click)


def navigate(driver: WebDriver, action: Callable[[], object]) -> None:
    """
    Do ``action`` (a click, a key press) and wait for the next page to load.

    The old page is told apart by a mark on its window object, which the next
    page does not have. Waiting for an element of the old page to go stale
    instead failed now and then with a bare WebDriverException from
    chromedriver while one page replaced the other.
    """
    driver.execute_script("window.counterprojectLeft = true;")
    action()
    WebDriverWait(
        driver,
        WAIT,
        # Scripts can fail while one document replaces the other: ask again.
        ignored_exceptions=(WebDriverException,),
    ).until(
        lambda d: d.execute_script(
            "return window.counterprojectLeft === undefined"
            ' && document.readyState === "complete";'
        ),
        "the next page did not load",
    )


def shown_value(driver: WebDriver) -> str:
    return driver.find_element(By.CSS_SELECTOR, '[data-testid="value"]').text


def flashes(driver: WebDriver) -> list[str]:
    return [m.text for m in driver.find_elements(By.CSS_SELECTOR, ".message")]


def button(driver: WebDriver, label: str) -> WebElement:
    """Return the button whose visible label is ``label``."""
    return driver.find_element(By.XPATH, f'//button[normalize-space()="{label}"]')


def save_screenshot(driver: WebDriver, name: str) -> Path:
    """Save what the browser shows as ``test-artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^\w.]+', '-', name).strip('-')}.png"
    driver.save_screenshot(str(path))
    return path


# Every URL the page names in a link, script, image or form, and every
# resource it actually fetched (fonts and images named by CSS included).
PAGE_URLS = """
const attributes = Array.from(
  document.querySelectorAll("[src], [href], [srcset], [action]"),
  (element) => ["src", "href", "srcset", "action"]
    .filter((name) => element.hasAttribute(name))
    .map((name) => new URL(element.getAttribute(name).split(/\\s/)[0],
                           document.baseURI).href)
).flat();
const fetched = performance.getEntriesByType("resource").map((e) => e.name);
return [document.location.href, ...attributes, ...fetched];
"""


def foreign_urls(driver: WebDriver) -> list[str]:
    """Return the URLs of the page that lead anywhere but 127.0.0.1."""
    return [
        url
        for url in driver.execute_script(PAGE_URLS)
        if urlsplit(url).scheme not in ("http", "https")
        or urlsplit(url).hostname != "127.0.0.1"
    ]
