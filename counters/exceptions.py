class CounterError(Exception):
    """A request about a counter that cannot be carried out; nothing changed."""


class CounterNotFound(CounterError):
    """No counter has the given name."""


class CounterNotPublic(CounterError):
    """The counter exists but anonymous clients may not use it."""


def not_public(name: str) -> CounterNotPublic:
    """Return the refusal of an anonymous client's use of a private counter."""
    return CounterNotPublic(
        f"Counter {name!r} is not public: anonymous clients cannot use it."
    )


class InvalidStep(CounterError):
    """The step is not a positive integer, or a take's is not exactly 1."""


class InvalidValue(CounterError):
    """A value a change cannot take: an option not on or off, a future cut-off."""


class OutOfRange(CounterError):
    """A number, or a change's result, is outside the signed 64-bit range."""


class InvalidName(CounterError):
    """The name is not a valid counter name."""


class CounterExists(CounterError):
    """A counter with that name exists already."""


class CounterProtected(CounterError):
    """The counter may not be deleted."""


class InvalidLimit(CounterError):
    """A listing limit is not a positive integer."""
