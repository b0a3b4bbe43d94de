"""Staff-only experiment results: ``/api/experiments/current/results`` and ``/api/experiments/<key>/results``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.api.schema import detail_response

from .presenters import results_as_dict
from .selectors import experiment_current_get, experiment_get, experiment_results
from .serializers import ExperimentResultsSerializer
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
