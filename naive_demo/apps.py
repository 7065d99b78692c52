from django.apps import AppConfig


class NaiveDemoConfig(AppConfig):
    name = "naive_demo"
    verbose_name = "Naive counters (a demonstration)"
