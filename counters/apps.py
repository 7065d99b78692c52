from django.apps import AppConfig


class CountersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "counters"
    verbose_name = "Counters"

    def ready(self) -> None:
        # Registers the app's checks, and the deployment's (the pool's fit,
        # #23).
        from counterproject import checks as deployment_checks  # noqa: F401

        from . import checks  # noqa: F401
