from django.db import migrations

GLOBAL = "global"


def create_global(apps, schema_editor):
    Counter = apps.get_model("counters", "Counter")
    Counter.objects.get_or_create(
        name=GLOBAL, defaults={"value": 0, "public": True, "audit_takes": True}
    )


def delete_global(apps, schema_editor):
    Counter = apps.get_model("counters", "Counter")
    Counter.objects.filter(name=GLOBAL).delete()


class Migration(migrations.Migration):
    dependencies = [("counters", "0001_initial")]

    operations = [migrations.RunPython(create_global, delete_global)]
