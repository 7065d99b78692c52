"""A counter's name: the rule every service and selector checks it by."""

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug

from .exceptions import InvalidName

# Counter.name is a SlugField of this length.
NAME_MAX_LENGTH = 100


def check_name(name: object) -> None:
    """Refuse what cannot be a counter's name, whether to create or to find it."""
    # A name is looked up by the same rule it was created by (the slug field's
    # own validator), so that text no counter can have (a NUL, an
    # unencodable byte from argv) never reaches the database. The validator
    # would take any object's str(): only text is a name.
    try:
        if not isinstance(name, str):
            raise ValidationError("not text")
        validate_slug(name)
    except ValidationError:
        raise InvalidName(
            f"{name!r} is not a valid counter name: use letters, digits, "
            "hyphens and underscores."
        ) from None
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidName(f"A counter name has at most {NAME_MAX_LENGTH} characters.")
