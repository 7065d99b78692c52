"""Middleware of the project's own."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


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
