"""
Cached, database-backed sessions that never lose a per-user counter update.

``SESSION_ENGINE = "counters.sessions"``. It is Django's ``cached_db`` engine
(the database is the record, the cache a copy) with two changes:

- the per-user counter is changed only under the session row's lock, by
  ``update_counter()``, and an ordinary save at the end of a request keeps the
  value the database holds instead of writing back the copy it loaded. A
  plain read-modify-write of the session blob would lose an increment to any
  request of the same session that saves at the same moment (a flash message,
  say);
- the counter is read from the database row, never from the cache: a Redis
  that restarts from an old snapshot holds an entry older than what the
  database got during the outage, and the counter must not go backwards.

Without Redis the cache is Django's DummyCache and this is the ``db`` engine.
"""

import logging
from collections.abc import Callable

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.cached_db import (
    SessionStore as CachedDBStore,
)
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.core.cache.backends.dummy import DummyCache
from django.db import router, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

COUNTER_KEY = "counters:me"


class SessionStore(CachedDBStore):
    cache_key_prefix = "session:"

    def _db_alias(self) -> str:
        return router.db_for_write(self.model)

    def _live_rows(self):
        return self.model.objects.filter(
            session_key=self.session_key, expire_date__gt=timezone.now()
        )

    def _cache_write(self, data: dict) -> None:
        try:
            self._cache.set(self.cache_key, data, self.get_expiry_age())
        except Exception:
            # The database has the data; the cache catches up on a later save.
            logger.exception("Could not write session to the cache")

    def _keep_stored_counter(self) -> None:
        """Lock this session's row and take the counter it holds into memory."""
        row = self._live_rows().select_for_update().first()
        if row is not None:
            stored = self.decode(row.session_data)
            if COUNTER_KEY in stored:
                self._session[COUNTER_KEY] = stored[COUNTER_KEY]

    def load(self) -> dict:
        data = super().load()
        if (
            data.get(SESSION_KEY) is not None
            and not isinstance(self._cache, DummyCache)
            and not self._live_rows().exists()
        ):
            # A logout (or expiry) whose cache delete failed during a Redis
            # outage, or a Redis back from an old snapshot, would otherwise
            # log the session in again from the cache. Only sessions that
            # carry a login pay for this check.
            self._session_key = None
            return {}
        return data

    def save(self, must_create: bool = False) -> None:
        """Save the session, keeping the counter value the database holds."""
        if must_create or self.session_key is None:
            return super().save(must_create)
        with transaction.atomic(using=self._db_alias()):
            self._keep_stored_counter()
            # The database part of cached_db's save; the cache is written
            # after the commit, so it never holds what was rolled back.
            DBStore.save(self, must_create=False)
        self._cache_write(self._session)

    def cycle_key(self) -> None:
        """Give the session a new key (as login does), keeping its counter."""
        if self.session_key is None:
            return super().cycle_key()
        # The old row stays locked until the new one holds its counter and
        # the old one is gone: no concurrent increment is lost in between.
        with transaction.atomic(using=self._db_alias()):
            self._keep_stored_counter()
            super().cycle_key()

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
            row = self._live_rows().select_for_update().first()
            if row is None:
                # Expired or deleted since the request began: start afresh,
                # without whatever this request had loaded.
                self._session_cache = {}
                self.create()
                row = self._live_rows().select_for_update().get()
            data = self.decode(row.session_data)
            value = change(data.get(COUNTER_KEY, 0))
            data[COUNTER_KEY] = value
            row.session_data = self.encode(data)
            row.save(update_fields=["session_data"])
        # Keep this request's copy in step without marking it modified.
        self._session[COUNTER_KEY] = value
        self._cache_write(data)
        return value

    def counter_value(self) -> int:
        """Return the per-user counter as the database holds it (0 if none)."""
        if self.session_key is None:
            return 0
        row = self._live_rows().only("session_data").first()
        if row is None:
            return 0
        return self.decode(row.session_data).get(COUNTER_KEY, 0)
