"""A fresh install runs one experiment: equal thirds for popularity (control), heuristic and DLRM."""

import secrets

from django.db import migrations
from django.utils import timezone


def create_default(apps, schema_editor):
    Experiment = apps.get_model("experiments", "Experiment")
    Arm = apps.get_model("experiments", "Arm")
    if Experiment.objects.exists():
        return
    experiment = Experiment.objects.create(
        key="rails-ranking",
        name="Rail ranking: popularity vs heuristic vs DLRM",
        description="Default experiment: equal thirds of visitors per ranking of the recommendation rails.",
        salt=secrets.token_hex(8),
        status="running",
        started_at=timezone.now(),
    )
    Arm.objects.bulk_create(
        [
            Arm(experiment=experiment, key="popularity", weight=1, is_control=True),
            Arm(experiment=experiment, key="heuristic", weight=1, is_control=False),
            Arm(experiment=experiment, key="dlrm", weight=1, is_control=False),
        ]
    )


def remove_default(apps, schema_editor):
    apps.get_model("experiments", "Experiment").objects.filter(key="rails-ranking").delete()


class Migration(migrations.Migration):
    dependencies = [("experiments", "0001_initial")]

    operations = [migrations.RunPython(create_default, remove_default)]
