"""Staff-only endpoints: start a retrain or a batch score, read a run's progress."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import runs, selectors
from .models import TaskRun


class TaskRunSerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.CharField()
    state = serializers.CharField()
    stage = serializers.CharField()
    percent = serializers.FloatField()
    device = serializers.CharField()
    hostname = serializers.CharField()
    deliveries = serializers.IntegerField()
    error = serializers.CharField()
    result = serializers.JSONField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


_Started = inline_serializer(
    "TaskStarted",
    {"task_id": serializers.CharField(), "state": serializers.CharField(), "status_url": serializers.CharField()},
)
_Busy = inline_serializer("TaskAlreadyRunning", {"detail": serializers.CharField(), "task_id": serializers.CharField()})


class _StartApi(APIView):
    permission_classes = [IsAdminUser]
    kind: str = ""

    @extend_schema(request=None, responses={202: _Started, 409: _Busy})
    def post(self, request):
        try:
            run = runs.task_run_start(kind=self.kind, trigger=f"api:{request.user.get_username()}")
        except runs.AlreadyRunning as e:
            return Response(
                {"detail": "already running", "task_id": str(e.run.id) if e.run else None},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(
            {
                "task_id": str(run.id),
                "state": run.state,
                "status_url": request.build_absolute_uri(f"../tasks/{run.id}"),
            },
            status=status.HTTP_202_ACCEPTED,
        )


class RetrainApi(_StartApi):
    kind = TaskRun.Kind.RETRAIN


class BatchScoreApi(_StartApi):
    kind = TaskRun.Kind.BATCH_SCORE


class TaskRunDetailApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses={200: TaskRunSerializer})
    def get(self, request, run_id):
        run = selectors.task_run_get(run_id=run_id)
        if run is None:
            return Response({"detail": "no such task"}, status=status.HTTP_404_NOT_FOUND)
        return Response(TaskRunSerializer(run).data)
