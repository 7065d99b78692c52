from django.db import models

GLOBAL = "global"

# A counter's value is a PostgreSQL bigint: signed 64-bit.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class Counter(models.Model):
    """A named counter whose value only services change, under a row lock."""

    name = models.SlugField(max_length=100, unique=True)
    value = models.BigIntegerField(default=0)
    public = models.BooleanField(
        default=False,
        help_text="Anonymous visitors may take numbers from a public counter.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
