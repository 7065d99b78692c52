from django.apps import AppConfig


class LoadtestConfig(AppConfig):
    """``manage.py loadtest``: the load that proves the take (and the demo wrong)."""

    name = "loadtest"
    verbose_name = "Load test"
