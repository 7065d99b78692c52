"""
Check the numbers a load was answered against what the database stored.

wrk stops with up to one request in flight per connection: those numbers
were taken, not answered. So every number answered must be one the counter
handed out (1 … its value), none twice, and at most one per connection
missing; more missing would be a gap, a number out of range a lost update.
"""

from .database import Database


def accounted(result: dict, stored: int) -> dict:
    """Add to ``result`` how its numbers compare with ``stored`` takes."""
    numbers = set(result.pop("numbers"))
    result["takes"] = stored
    result["missing"] = stored - len(numbers)
    result["out_of_range"] = sum(not 1 <= number <= stored for number in numbers)
    return result


def checked(db: Database, result: dict, *, counter: str, since: int) -> dict:
    """
    Account for a take's numbers against ``counter``'s value (reset to 0
    before the load), and add how many audit entries and transactions
    (batches) wrote them after entry ``since``.
    """
    accounted(result, db.settled(counter))
    result["audited"], result["batches"] = db.audited(counter, since)
    return result


def unchecked(result: dict, *, constant: bool = False) -> dict:
    """
    Drop the numbers of a load that hands out none of the counter's: a
    no-op answers 0 every time (``constant``: its duplicates mean nothing),
    django-sequences keeps its own.
    """
    result.pop("numbers")
    if constant:
        result["duplicates"] = None
    return result


def visitors_checked(result: dict, values: list[int]) -> dict:
    """
    Account for the per-user increments: no lost update if the visitors'
    counters (``values``) add up to every increment answered, plus the one
    each visitor started with, plus at most one in flight per connection.
    """
    result.pop("numbers")
    result["duplicates"] = None  # each visitor counts on its own
    result["takes"] = sum(values) - len(values)
    result["missing"] = result["takes"] - result["answered"]
    return result
