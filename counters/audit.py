"""Who changed a counter, and from where: the actor of an audit entry."""

import getpass
import hashlib
from dataclasses import dataclass

from .models import Source

# Changes from these sources are always recorded; web and API takes only on
# counters that ask for it (Counter.audit_takes).
ALWAYS_RECORDED = {Source.ADMIN, Source.CLI}


# CounterEvent.actor's length: a longer name (a custom user model's) is cut,
# rather than failing the change and every take batched with it.
WHO_MAX_LENGTH = 255


@dataclass(frozen=True)
class Actor:
    source: Source
    who: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "who", self.who[:WHO_MAX_LENGTH])

    @property
    def always_recorded(self) -> bool:
        return self.source in ALWAYS_RECORDED

    @classmethod
    def for_staff(cls, request) -> "Actor":
        """Return the staff member behind an admin request."""
        return cls(Source.ADMIN, f"user:{request.user.get_username()}")

    @classmethod
    def for_visitor(cls, request) -> "Actor":
        """Return the visitor behind a page request: user, else session."""
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return cls(Source.WEB, f"user:{user.get_username()}")
        if request.session.session_key is None:
            request.session.save()  # a session key names the visitor
        # The key itself is a credential: the trail keeps a digest of it.
        digest = hashlib.sha256(request.session.session_key.encode()).hexdigest()
        return cls(Source.WEB, f"session:{digest[:16]}")

    @classmethod
    def for_api(cls, request) -> "Actor":
        """Return the anonymous API client, named by its address."""
        return cls(Source.API, f"ip:{request.META.get('REMOTE_ADDR', 'unknown')}")

    @classmethod
    def for_shell(cls) -> "Actor":
        """Return the operating-system user running a command."""
        try:
            who = getpass.getuser()
        except (OSError, KeyError):
            # No login name and no passwd entry, as in some containers.
            who = "unknown"
        return cls(Source.CLI, f"os:{who}")
