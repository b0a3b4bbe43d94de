from django.urls import path

from . import api

app_name = "experiments"

urlpatterns = [
    path("current/results", api.CurrentExperimentResultsApi.as_view(), name="current-results"),
    path("current/composition", api.CurrentExperimentCompositionApi.as_view(), name="current-composition"),
    path("<slug:key>/results", api.ExperimentResultsApi.as_view(), name="results"),
]
