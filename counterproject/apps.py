from django.apps import AppConfig


class CounterprojectConfig(AppConfig):
    """The project around the app: its deployment's checks (#23)."""

    name = "counterproject"
    verbose_name = "counterproject"

    def ready(self) -> None:
        # Registers the check that the workers' pools fit max_connections.
        from . import checks  # noqa: F401
