from shop.recs.models import TaskRun

from ._trigger import TriggerCommand


class Command(TriggerCommand):
    help = "Write the event log to a new versioned Parquet snapshot (what retraining reads)."
    kind = TaskRun.Kind.EXPORT
