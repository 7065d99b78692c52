"""
Cached, database-backed sessions that never lose a per-user counter update.

``SESSION_ENGINE = "counters.sessions"``. It is Django's ``cached_db`` engine
(the database is the record, the cache a copy) with these changes:

- the per-user counter is changed only under the session row's lock, by
  ``update_counter()``, and an ordinary save at the end of a request keeps the
  value the database holds instead of writing back the copy it loaded. A
  plain read-modify-write of the session blob would lose an increment to any
  request of the same session that saves at the same moment (a flash message,
  say);
- the counter is read from the database row, never from the cache: a Redis
  that restarts from an old snapshot holds an entry older than what the
  database got during the outage, and the counter must not go backwards;
- the cache is written and deleted only once the database has committed
  (``transaction.on_commit``), so it never holds what was rolled back;
- a cached login whose row is gone is removed from the cache;
- each async twin (``aload``, ``asave``, ``acycle_key``…, and
  ``aupdate_counter``, ``acounter_value``) runs its sync method, so it keeps
  the same guarantees (#26).

Without Redis the cache is Django's DummyCache and this is the ``db`` engine.
"""

import logging
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.cached_db import (
    SessionStore as CachedDBStore,
)
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.db import router, transaction
from django.utils import timezone

from . import metrics

logger = logging.getLogger(__name__)

COUNTER_KEY = "counters:me"


class SessionStore(CachedDBStore):
    cache_key_prefix = "session:"

    # --- Storage: the row (under its lock) and the cache after the commit ---

    def _db_alias(self) -> str:
        return router.db_for_write(self.model)

    def _live_rows(self):
        return self.model.objects.filter(
            session_key=self.session_key, expire_date__gt=timezone.now()
        )

    def _locked_row(self):
        """Lock this session's live row and return it (None if there is none)."""
        return self._live_rows().select_for_update().first()

    def _after_commit(self, change: Callable[[], object]) -> None:
        """Run the cache ``change`` once the database has committed."""

        def run() -> None:
            try:
                change()
            except Exception:
                # The database has the data; the cache catches up later.
                logger.exception("Could not update the session cache")

        # Runs at once outside a transaction, never after a rollback.
        transaction.on_commit(run, using=self._db_alias())

    def _cache_set(self, data: dict, expiry=None) -> None:
        """Copy ``data`` to the cache under the current key, after the commit."""
        key, data = self.cache_key, dict(data)
        age = self.get_expiry_age(expiry=expiry)
        self._after_commit(lambda: self._cache.set(key, data, age))

    def _cache_delete(self, session_key: str) -> None:
        """Remove ``session_key``'s cached copy, after the commit."""
        key = self.cache_key_prefix + session_key
        self._after_commit(lambda: self._cache.delete(key))

    # --- Django's session API ------------------------------------------------

    def load(self) -> dict:
        try:
            data = self._cache.get(self.cache_key)
        except Exception:
            # As cached_db: a key the cache refuses is a miss (Django #17810).
            data = None
        if metrics.collecting():
            source = "database" if data is None else "cache"
            metrics.SESSION_LOADS.labels(source).inc()
        if data is None:
            row = self._get_session_from_db()  # forgets the key if none
            if row is None:
                return {}
            data = self.decode(row.session_data)
            self._cache_set(data, expiry=row.expire_date)
            return data
        if data.get(SESSION_KEY) is not None and not self._live_rows().exists():
            # A logout (or expiry) whose cache delete failed during a Redis
            # outage, or a Redis back from an old snapshot, would otherwise
            # log the session in again from the cache. Only cached sessions
            # that carry a login pay for this check.
            self._cache_delete(self.session_key)
            self._session_key = None
            return {}
        return data

    def save(self, must_create: bool = False) -> None:
        """Save the session, keeping the counter value the database holds."""
        if self.session_key is None:
            return self.create()
        with transaction.atomic(using=self._db_alias()):
            if not must_create:
                self._keep_stored_counter()
            DBStore.save(self, must_create=must_create)
            self._cache_set(self._session)

    def delete(self, session_key: str | None = None) -> None:
        session_key = session_key or self.session_key
        if session_key is None:
            return
        DBStore.delete(self, session_key)
        self._cache_delete(session_key)

    def cycle_key(self) -> None:
        """Give the session a new key (as login does), keeping its counter."""
        if self.session_key is None:
            return super().cycle_key()
        # The old row stays locked until the new one holds its counter and
        # the old one is gone: no concurrent increment is lost in between.
        with transaction.atomic(using=self._db_alias()):
            self._keep_stored_counter()
            super().cycle_key()

    # --- The per-user counter ------------------------------------------------

    def _keep_stored_counter(self) -> None:
        """Lock this session's row and take the counter it holds into memory."""
        row = self._locked_row()
        if row is not None:
            stored = self.decode(row.session_data)
            if COUNTER_KEY in stored:
                self._session[COUNTER_KEY] = stored[COUNTER_KEY]

    def update_counter(self, change: Callable[[int], int]) -> int:
        """
        Replace the per-user counter ``value`` with ``change(value)``.

        ``change`` runs while the session row is locked and may raise to
        change nothing. A visitor without a session gets one. Return the new
        value.
        """
        if self.session_key is None:
            self.create()
        with transaction.atomic(using=self._db_alias()):
            row = self._locked_row()
            if row is None:
                # Expired or deleted since the request began: start afresh,
                # without whatever this request had loaded.
                self._session_cache = {}
                self.create()
                row = self._locked_row()
            data = self.decode(row.session_data)
            value = change(data.get(COUNTER_KEY, 0))
            data[COUNTER_KEY] = value
            row.session_data = self.encode(data)
            row.save(update_fields=["session_data"])
            self._cache_set(data)
        # Keep this request's copy in step without marking it modified. A
        # copy not loaded yet is the row just written: no second read.
        if hasattr(self, "_session_cache"):
            self._session_cache[COUNTER_KEY] = value
        else:
            self._session_cache = data
        # The answer depends on the session (Vary: Cookie), as after a read.
        self.accessed = True
        return value

    def counter_value(self) -> int:
        """Return the per-user counter as the database holds it (0 if none)."""
        if self.session_key is None:
            return 0
        row = self._live_rows().only("session_data").first()
        if row is None:
            return 0
        return self.decode(row.session_data).get(COUNTER_KEY, 0)

    # --- Async twins ---------------------------------------------------------
    #
    # Django's own twins take another path: cached_db's write the cache before
    # the commit and know no stale login, and base acycle_key() creates and
    # deletes without the row lock. Each twin here runs its sync method in a
    # thread instead: transaction.atomic(), select_for_update() and on_commit()
    # have no async API, and one code path keeps one set of guarantees.
    # thread_sensitive=True runs it in the request's own sync thread (one per
    # ASGI request), on the connection and in the transaction, if any, of the
    # request's other sync code. The dict-like twins (aget, aset, apop…) and
    # the expiry twins load through aload(); acache_key() picks a new key
    # through aexists(); aclear_expired() touches only the database, as
    # clear_expired() does.

    async def aload(self) -> dict:
        """See load()."""
        return await sync_to_async(self.load, thread_sensitive=True)()

    async def aexists(self, session_key: str) -> bool:
        """See exists()."""
        # cached_db's aexists() asks the cache synchronously, in the event loop.
        return await sync_to_async(self.exists, thread_sensitive=True)(session_key)

    async def acreate(self) -> None:
        """See create()."""
        await sync_to_async(self.create, thread_sensitive=True)()

    async def asave(self, must_create: bool = False) -> None:
        """See save()."""
        await sync_to_async(self.save, thread_sensitive=True)(must_create)

    async def adelete(self, session_key: str | None = None) -> None:
        """See delete()."""
        await sync_to_async(self.delete, thread_sensitive=True)(session_key)

    async def acycle_key(self) -> None:
        """See cycle_key(); django.contrib.auth.alogin() calls this."""
        await sync_to_async(self.cycle_key, thread_sensitive=True)()

    async def aflush(self) -> None:
        """See flush(); django.contrib.auth.alogout() calls this."""
        await sync_to_async(self.flush, thread_sensitive=True)()

    async def aupdate_counter(self, change: Callable[[int], int]) -> int:
        """
        See update_counter().

        ``change`` is a plain function: it runs in the thread, under the lock.
        """
        return await sync_to_async(self.update_counter, thread_sensitive=True)(change)

    async def acounter_value(self) -> int:
        """See counter_value()."""
        return await sync_to_async(self.counter_value, thread_sensitive=True)()
