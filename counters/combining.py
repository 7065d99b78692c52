"""
Combine the calls that wait on one lock in this process into one batch.

A hot counter row admits one transaction at a time. When many threads of a
worker take numbers at once, each would hold the row lock across its own
round trips while the others queue behind it. Instead, the calls that arrive
while a batch is running wait together; when it ends, one of them (the next
leader) runs them all as the next batch, in one transaction, and hands each
its own result. The leader leads once and returns, so no caller serves
strangers for long.

Every caller in a batch shares its fate: if the batch raises, each of them
raises. A batch can also refuse one call alone, by returning an exception as
that call's result.

``acombine`` does the same for coroutines of one event loop (an ASGI
worker): the callers wait in the loop, not in a thread each, and each batch
runs in one thread of the loop's executor, as database calls must.
"""

import asyncio
import copy
import threading
from collections.abc import Callable, Hashable
from typing import Any


class _Call:
    __slots__ = ("item", "ready", "done", "result", "error", "shared")

    def __init__(self, item: Any) -> None:
        self.item = item
        # Held until this call is done or asked to lead the next batch; the
        # caller waits by acquiring it. A bare lock is the cheapest wake-up
        # there is (an Event wraps one in a Condition), and a busy counter
        # pays for one per take.
        self.ready = threading.Lock()
        self.ready.acquire()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.shared = False  # the error is the whole batch's


class _Lane:
    __slots__ = ("lock", "waiting", "busy")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: list[_Call] = []
        self.busy = False


_lanes: dict[Hashable, _Lane] = {}
_lanes_lock = threading.Lock()


def _lane(key: Hashable) -> _Lane:
    lane = _lanes.get(key)
    if lane is None:
        with _lanes_lock:
            lane = _lanes.setdefault(key, _Lane())
    return lane


def combine(key: Hashable, item: Any, run: Callable[[list[Any]], list[Any]]) -> Any:
    """
    Return this call's share of ``run(items)``, batched with concurrent calls.

    Calls with the same ``key`` are batched together; ``run`` receives their
    items in arrival order and returns one result for each: a result that is
    an exception is raised by its call alone.
    """
    lane = _lane(key)
    call = _Call(item)
    with lane.lock:
        lane.waiting.append(call)
        leads = not lane.busy
        lane.busy = True
    if not leads:
        call.ready.acquire()
        leads = not call.done  # woken to lead the batch it is part of
    if leads:
        _run_batch(key, lane, run)
    if call.error is not None:
        if leads or not call.shared:
            raise call.error
        # Each other thread raises its own copy: one shared exception object
        # would gather every thread's traceback.
        raise copy.copy(call.error).with_traceback(None) from call.error
    return call.result


def _run_batch(
    key: Hashable, lane: _Lane, run: Callable[[list[Any]], list[Any]]
) -> None:
    with lane.lock:
        batch, lane.waiting = lane.waiting, []
    try:
        results = run([call.item for call in batch])
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                call.error = result
            else:
                call.result = result
    except BaseException as exc:  # every caller in the batch shares its fate
        for call in batch:
            call.error, call.shared = exc, True
    finally:
        for call in batch:
            call.done = True
        with lane.lock:
            if lane.waiting:
                # Hand the lead to the first caller that arrived meanwhile.
                lane.waiting[0].ready.release()
            else:
                lane.busy = False
                # An idle lane is dropped, so that keys that come and go (a
                # client trying names that do not exist) cannot pile up. A
                # caller still holding it only leads a batch of its own.
                with _lanes_lock:
                    if _lanes.get(key) is lane:
                        del _lanes[key]
        for call in batch:  # the leader's own lock too: nobody waits on it
            call.ready.release()


# --- In an event loop ------------------------------------------------------

# (loop, key) -> the calls waiting for the next batch of that lane. A lane
# is here while a batch of it runs, and is dropped when it runs dry.
_async_lanes: dict[tuple[asyncio.AbstractEventLoop, Hashable], list] = {}
# The lanes' tasks: the loop itself keeps only a weak reference to a task.
_drains: set[asyncio.Task] = set()


async def acombine(
    key: Hashable, item: Any, run: Callable[[list[Any]], list[Any]]
) -> Any:
    """
    ``combine`` for coroutines: return this call's share of ``run(items)``.

    ``run`` is synchronous: it runs in the loop's default executor, one
    batch at a time for each key, while the calls that arrive meanwhile wait
    in the loop for the next batch. No caller runs strangers' batches: the
    lane has a task of its own.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    waiting = _async_lanes.get((loop, key))
    if waiting is None:
        waiting = _async_lanes[loop, key] = []
        drain = loop.create_task(_drain(loop, key, waiting, run))
        _drains.add(drain)
        drain.add_done_callback(_drains.discard)
    waiting.append((item, future))
    return await future


async def _drain(loop, key: Hashable, waiting: list, run) -> None:
    """Run the lane's waiting calls as batches until none is left."""
    try:
        while waiting:
            batch = waiting[:]
            waiting.clear()
            try:
                results = await loop.run_in_executor(
                    None, run, [item for item, _ in batch]
                )
                outcomes = list(zip(batch, results, strict=True))
            except BaseException as exc:  # every caller in the batch shares it
                _fail(batch, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in outcomes:
                if future.done():
                    continue  # its caller went away: nobody to tell
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
    finally:
        del _async_lanes[loop, key]
        _fail(waiting, asyncio.CancelledError())  # only if the lane was cancelled


def _fail(calls: list, exc: BaseException) -> None:
    for index, (_, future) in enumerate(calls):
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        elif index == 0:
            future.set_exception(exc)
        else:
            # Each other caller raises its own copy, as with combine.
            error = copy.copy(exc).with_traceback(None)
            error.__cause__ = exc
            future.set_exception(error)
