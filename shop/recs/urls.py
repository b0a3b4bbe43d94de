from django.urls import path

from . import api

app_name = "recs"

urlpatterns = [
    path("retrain", api.RetrainApi.as_view(), name="retrain"),
    path("batch-score", api.BatchScoreApi.as_view(), name="batch-score"),
    path("tasks/<uuid:run_id>", api.TaskRunDetailApi.as_view(), name="task"),
    path("serving-stats", api.ServingStatsApi.as_view(), name="serving-stats"),
]
