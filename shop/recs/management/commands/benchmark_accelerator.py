from shop.recs.models import TaskRun

from ._trigger import TriggerCommand


class Command(TriggerCommand):
    help = (
        "Queue the accelerator benchmark (recommender.bench) on a worker of the gpu queue; its figures are stored "
        "for the merchant console. --inline runs it here, --wait shows progress."
    )
    kind = TaskRun.Kind.BENCHMARK
