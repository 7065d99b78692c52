"""Who changed a counter, and from where: the actor of an audit entry."""

from dataclasses import dataclass

from .models import Source

# CounterEvent.actor's length: a longer name (a custom user model's) is cut,
# rather than failing the change and every take batched with it.
WHO_MAX_LENGTH = 255


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
        object.__setattr__(self, "who", self.who[:WHO_MAX_LENGTH])
