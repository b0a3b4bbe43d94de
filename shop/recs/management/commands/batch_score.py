from shop.recs.models import TaskRun

from ._trigger import TriggerCommand


class Command(TriggerCommand):
    help = "Recompute every active visitor's top recommendations with the active model. --wait shows progress."
    kind = TaskRun.Kind.BATCH_SCORE
