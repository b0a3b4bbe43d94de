from shop.recs.models import TaskRun

from ._trigger import TriggerCommand


class Command(TriggerCommand):
    help = "Export new events, retrain, gate and promote the model (then batch scores follow). --wait shows progress."
    kind = TaskRun.Kind.RETRAIN
