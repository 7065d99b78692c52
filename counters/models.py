from django.db import models

from .exceptions import OutOfRange
from .names import NAME_MAX_LENGTH

GLOBAL = "global"

# Who made a change, as the audit trail keeps it: a longer name (a custom
# user model's) is cut (counters.actors), rather than failing the change and
# every take batched with it.
ACTOR_MAX_LENGTH = 255

# A counter's value is a PostgreSQL bigint: signed 64-bit.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def check_int64(what: str, number: int) -> None:
    """Refuse a number a bigint cannot hold: a value, a step or a limit."""
    if not INT64_MIN <= number <= INT64_MAX:
        raise OutOfRange(f"{what} {number} is outside the signed 64-bit range.")


class Counter(models.Model):
    """A named counter whose value only services change, under a row lock."""

    name = models.SlugField(max_length=NAME_MAX_LENGTH, unique=True)
    value = models.BigIntegerField(default=0)
    public = models.BooleanField(
        default=False,
        help_text="Anonymous visitors may take numbers from a public counter.",
    )
    audit_takes = models.BooleanField(
        "record every take",
        default=False,
        help_text="Record each number taken from the web or the API in the "
        "audit trail, so it answers “who got number N”. Off, a take costs no "
        "extra write.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField("last change", auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Source(models.TextChoices):
    ADMIN = "admin", "Admin site"
    CLI = "cli", "Command line"
    API = "api", "API"
    WEB = "web", "Web page"


class Action(models.TextChoices):
    CREATE = "create"
    TAKE = "take"
    INCREMENT = "increment"
    DECREMENT = "decrement"
    SET = "set"
    RESET = "reset"
    DELETE = "delete"
    # Option changes (#12): old and new value are 0 (off) or 1 (on).
    PUBLIC = "public"
    AUDIT_TAKES = "audit", "record every take"
    # A prune of the trail itself (#23): old value is how many entries it
    # removed, new value is empty; the counter is "*" when it pruned every
    # counter's entries. A prune never removes these records.
    PRUNE = "prune", "prune history"


class CounterEvent(models.Model):
    """
    One change of a counter: what, from which value to which, who and where.

    Written in the transaction of the change. It names the counter instead of
    pointing at it, so the trail outlives a deleted counter.
    """

    counter_name = models.CharField("counter", max_length=NAME_MAX_LENGTH)
    action = models.CharField(max_length=10, choices=Action.choices)
    old_value = models.BigIntegerField(null=True, blank=True)
    new_value = models.BigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=5, choices=Source.choices)
    actor = models.CharField(max_length=ACTOR_MAX_LENGTH)
    created_at = models.DateTimeField("when", auto_now_add=True)

    class Meta:
        # The id grows with time: "newest first" is a walk down an index.
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["counter_name", "-id"], name="event_counter_idx"),
            models.Index(fields=["source", "-id"], name="event_source_idx"),
            # The admin's action filter, newest first (#23).
            models.Index(fields=["action", "-id"], name="event_action_idx"),
            # Pruning finds the entries older than a date without reading
            # the newer ones; the admin sorts by it (#23).
            models.Index(fields=["created_at"], name="event_created_idx"),
        ]
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"

    def __str__(self) -> str:
        return f"{self.counter_name} {self.action} {self.old_value}→{self.new_value}"
