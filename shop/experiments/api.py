"""Staff-only experiment results: ``/api/experiments/current/results`` and ``/api/experiments/<key>/results``;
what the running experiment's rails showed: ``/api/experiments/current/composition``."""

from __future__ import annotations

from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.api.schema import detail_response

from .composition import CONTROL_TOP, experiment_composition
from .presenters import results_as_dict
from .selectors import experiment_current_get, experiment_get, experiment_results, experiment_spec_get
from .serializers import ExperimentCompositionSerializer, ExperimentResultsSerializer
from .serving_mix import experiment_serving_mix

_RESPONSES = {
    200: ExperimentResultsSerializer,
    401: OpenApiResponse(description="Not signed in (session or token)."),
    403: OpenApiResponse(description="Not staff."),
    404: detail_response("No such experiment."),
}


class _ResultsApi(APIView):
    permission_classes = [IsAdminUser]

    def _respond(self, experiment):
        if experiment is None:
            raise NotFound("No such experiment.")
        data = results_as_dict(
            experiment=experiment,
            results=experiment_results(experiment=experiment),
            serving_mix=experiment_serving_mix(experiment=experiment),
        )
        return Response(ExperimentResultsSerializer(data).data)


class CurrentExperimentResultsApi(_ResultsApi):
    @extend_schema(
        operation_id="experiments_current_results",
        summary="Results of the running experiment (else the last stopped one)",
        responses=_RESPONSES,
    )
    def get(self, request):
        return self._respond(experiment_current_get())


class ExperimentResultsApi(_ResultsApi):
    @extend_schema(operation_id="experiments_results", summary="Results of one experiment", responses=_RESPONSES)
    def get(self, request, key: str):
        return self._respond(experiment_get(key=key))


COMPOSITION_CACHE_S = 60  # it reads every card of the window: once a minute at most, on the shared cache


class CurrentExperimentCompositionApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="experiments_current_composition",
        summary="What the running experiment's rails showed, per arm (else the last stopped one's)",
        description="Per arm, over every card of the personalised rails in the window: cards, distinct products, "
        "the visitor's own products and their click rate, the others' click rate, and the others among the "
        "control's most-shown products. Read from the log at most once a minute.",
        responses={**_RESPONSES, 200: ExperimentCompositionSerializer},
    )
    def get(self, request):
        experiment = experiment_current_get()
        if experiment is None:
            raise NotFound("No such experiment.")
        window = [t.timestamp() if t is not None else "" for t in (experiment.started_at, experiment.stopped_at)]
        key = "experiments:composition:{}:{}:{}".format(experiment.pk, *window)  # a restart re-reads
        data = cache.get(key)
        if data is None:
            data = {
                "experiment": experiment.key,
                "control": experiment_spec_get(experiment=experiment).control,
                "control_top": CONTROL_TOP,
                "computed_at": timezone.now(),
                "arms": experiment_composition(experiment=experiment),  # read field by field, properties too
            }
            cache.set(key, data, COMPOSITION_CACHE_S)
        return Response(ExperimentCompositionSerializer(data).data)
