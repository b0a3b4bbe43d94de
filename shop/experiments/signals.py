from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Arm, Experiment
from .selectors import running_experiment_forget


@receiver([post_save, post_delete], sender=Experiment)
@receiver([post_save, post_delete], sender=Arm)
def _forget_running_experiment(**kwargs) -> None:
    running_experiment_forget()
    transaction.on_commit(running_experiment_forget)  # a read inside the transaction may have cached it
