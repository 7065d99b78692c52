"""Middleware of the project's own."""

import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from whitenoise.middleware import WhiteNoiseMiddleware

from . import metrics

requests_log = logging.getLogger("counterproject.requests")


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """
    WhiteNoise's middleware, able to run in an ASGI server's event loop.

    WhiteNoise's own is synchronous only. Under ASGI, Django then runs it,
    and with it every middleware and view after it, in a thread of its own
    for each request, so that even a view written as ``async def`` cannot
    run in the event loop. This one looks the path up in the event loop and
    hands anything that is not a static file straight on; only a static
    file's answer is prepared in a thread, as it opens the file.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response, *args, **kwargs) -> None:
        super().__init__(get_response, *args, **kwargs)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)


class RequestObservationMiddleware:
    """
    Time, count and log each answer (#25): the metrics of
    ``counterproject.metrics``, and one line on the ``counterproject.requests``
    logger with the method, path, status and duration, and for a take the
    counter and its number (the take views note them on the request).

    Outermost, so that its time is the whole of Django's; sync or async, as
    the server serves, so that it keeps an ASGI view in the event loop.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        began = time.perf_counter()
        response = self.get_response(request)
        observe(request, response, time.perf_counter() - began)
        return response

    async def __acall__(self, request):
        began = time.perf_counter()
        response = await self.get_response(request)
        observe(request, response, time.perf_counter() - began)
        return response


def observe(request, response, seconds: float) -> None:
    """Count, time and log one answer."""
    counting, logging_it = metrics.collecting(), requests_log.isEnabledFor(logging.INFO)
    if not (counting or logging_it):
        return
    match = getattr(request, "resolver_match", None)
    if match is not None:
        view = match.view_name
    elif request.path_info.startswith(f"/{settings.STATIC_URL.lstrip('/')}"):
        view = "static"
    else:
        view = "unmatched"  # 404s of unknown paths, redirects to HTTPS
    status = response.status_code
    if counting:
        metrics.RESPONSES.labels(view, str(status)).inc()
        metrics.DURATION.labels(view, f"{status // 100}xx").observe(seconds)
    if logging_it:
        fields = {
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "view": view,
            **getattr(request, "counters_taken", {}),
        }
        requests_log.info(
            "%s %s %s", request.method, request.path, status, extra=fields
        )
