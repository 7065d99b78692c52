"""
A trivial HTTP endpoint for measuring loadtest's own ceiling.

    python bench/trivial_server.py PORT

``POST /`` answers ``{"value": N}`` with N counting up; one asyncio process,
so the numbers are correct and the server does as little as a server can.
"""

import sys

from aiohttp import web

count = 0


async def increment(request: web.Request) -> web.Response:
    global count
    count += 1
    return web.json_response({"value": count})


def main() -> None:
    app = web.Application()
    app.router.add_post("/", increment)
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None
    )


if __name__ == "__main__":
    main()
