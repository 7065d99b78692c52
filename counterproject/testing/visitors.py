"""A visitor over real HTTP: its own cookies, CSRF token and threads."""

import threading
from concurrent.futures import ThreadPoolExecutor

import requests


class Visitor:
    """One browser: the session and CSRF cookies it was given."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        response = requests.get(f"{base_url}/api/me/", timeout=10)
        response.raise_for_status()
        self.cookies = dict(response.cookies)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.base_url}{path}", cookies=self.cookies, timeout=30)

    def post(self, path: str, **kwargs) -> requests.Response:
        response = requests.post(
            f"{self.base_url}{path}",
            cookies=self.cookies,
            headers={"X-CSRFToken": self.cookies["csrftoken"]},
            allow_redirects=False,
            timeout=30,
            **kwargs,
        )
        if "sessionid" in response.cookies and "sessionid" not in self.cookies:
            self.cookies["sessionid"] = response.cookies["sessionid"]
        return response

    def value(self) -> int:
        return self.get("/api/me/").json()["value"]


def all_at_once(calls: list) -> list:
    """Run the zero-argument ``calls`` from threads released together."""
    start = threading.Barrier(len(calls), timeout=30)

    def run(call):
        start.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))
