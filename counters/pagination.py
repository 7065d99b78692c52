"""
Paging through the audit trail without counting it (#23).

Django's paginator counts every row a list shows, ``SELECT COUNT(*)``, on
every page: with a million audit entries that reads the whole table (or
index) each time. This one reads at most ``EXACT_UP_TO`` + 1 index entries
and, beyond them, takes PostgreSQL's planner estimate.
"""

import json

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

# A hundred pages of the admin's hundred entries: counted exactly.
EXACT_UP_TO = 10_000


class EstimatingPaginator(Paginator):
    """
    Count a queryset exactly up to ``EXACT_UP_TO`` rows and estimate beyond.

    Past the bound, PostgreSQL's count is the planner's estimate (from the
    table's statistics, refreshed by autovacuum), so the total and the last
    pages are approximate. Other databases count exactly.
    """

    @cached_property
    def count(self) -> int:
        # COUNT(*) over a subquery with LIMIT: at most EXACT_UP_TO + 1 rows.
        bounded = self.object_list[: EXACT_UP_TO + 1].count()
        if bounded <= EXACT_UP_TO:
            return bounded
        return max(bounded, self.estimate())

    def estimate(self) -> int:
        """Return the planner's row estimate for the list (exact off PostgreSQL)."""
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return queryset.count()
        sql, params = queryset.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            [(plan,)] = cursor.fetchall()
        if isinstance(plan, str):  # psycopg2 parses json; some setups do not
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])
