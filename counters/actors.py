"""Who changed a counter, and from where: the actor of an audit entry."""

from dataclasses import dataclass

from .models import ACTOR_MAX_LENGTH, Source


@dataclass(frozen=True)
class Actor:
    """
    The source of a change and who made it, as the audit trail records them.

    Each interface builds its own (the admin names the staff member, a page
    the visitor, the API the client's address, a command the shell's user);
    whether the change is recorded is the services' rule.
    """

    source: Source
    who: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "who", self.who[:ACTOR_MAX_LENGTH])
