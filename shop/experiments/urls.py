from django.urls import path

from . import api

app_name = "experiments"

urlpatterns = [
    path("current/results", api.CurrentExperimentResultsApi.as_view(), name="current-results"),
    path("<slug:key>/results", api.ExperimentResultsApi.as_view(), name="results"),
]
