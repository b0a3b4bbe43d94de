"""Staff-only endpoints: start a retrain or a batch score, read a run's progress."""

from __future__ import annotations

import os

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.api.fields import QuerySerializer
from shop.api.schema import detail_response
from shop.api.throttles import AddressScopedRateThrottle, VisitorScopedRateThrottle
from shop.catalog.web import device_get
from shop.events.models import Visitor

from . import cards, live, runs, selectors, serving, stats
from .models import TaskRun

_Error = inline_serializer("RecsError", {"detail": serializers.CharField(required=False)})


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


# ------------------------------------------------------------------------------------ recommendations


class RecommendationsQuery(QuerySerializer):  # `?visitor_id=` must not mean "me"
    placement = serializers.ChoiceField(choices=sorted(live.PLACEMENTS))
    k = serializers.IntegerField(min_value=1, max_value=100, default=8)
    visitor_id = serializers.UUIDField(required=False, help_text="Another visitor's list: staff only.")
    arm = serializers.ChoiceField(
        choices=sorted(live.ARMS), required=False, help_text="What this arm would show (a preview): staff only."
    )


class RecommendedItemSerializer(serializers.Serializer):
    product_id = serializers.IntegerField()
    name = serializers.CharField()
    price = serializers.DecimalField(max_digits=10, decimal_places=2)
    url = serializers.CharField()
    score = serializers.FloatField(allow_null=True)


class RecommendationsSerializer(serializers.Serializer):
    placement = serializers.CharField()
    items = RecommendedItemSerializer(many=True)
    arm = serializers.CharField(allow_null=True)
    experiment = serializers.CharField(allow_null=True)
    model_version = serializers.CharField(allow_null=True)
    source = serializers.ChoiceField(choices=["live", "batch", "popularity", "fallback"])
    reason = serializers.CharField(allow_blank=True, help_text="Why an earlier source did not serve.")
    latency_ms = serializers.DictField(child=serializers.FloatField(), help_text="Per stage, and total.")


class _StaffExempt:
    """Staff (the console's inspector, load tests by an operator) are not throttled."""

    def allow_request(self, request, view) -> bool:
        if request.user.is_staff:
            return True
        return super().allow_request(request, view)


class RecsVisitorThrottle(_StaffExempt, VisitorScopedRateThrottle):
    """Scope ``recs``: per visitor (signed cookie), else per address."""


class RecsAddressThrottle(_StaffExempt, AddressScopedRateThrottle):
    """Scope ``recs_ip``: per client address, whatever the cookies say."""


class RecommendationsApi(APIView):
    """The current visitor's recommendations for a placement (what its rail would show)."""

    permission_classes = [AllowAny]
    throttle_classes = [RecsVisitorThrottle, RecsAddressThrottle]
    throttle_scope = "recs"

    @extend_schema(
        parameters=[RecommendationsQuery],
        responses={
            200: RecommendationsSerializer,
            400: _Error,
            403: _Error,
            429: detail_response(
                "Throttled (scope `recs` per visitor, `recs_ip` per address; staff exempt). "
                "The Retry-After header says when to retry."
            ),
        },
    )
    def get(self, request):
        query = RecommendationsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        visitor_id, user_id = request.visitor_id, request.user.pk if request.user.is_authenticated else None
        if "visitor_id" in q:
            if not request.user.is_staff:
                raise PermissionDenied({"visitor_id": "only staff may ask for another visitor's recommendations"})
            visitor_id = q["visitor_id"]
            user_id = Visitor.objects.filter(pk=visitor_id).values_list("user_id", flat=True).first()
        if "arm" in q and not request.user.is_staff:
            raise PermissionDenied({"arm": "only staff may preview another arm"})
        served = live.recommendations_serve(
            visitor_id=visitor_id,
            user_id=user_id,
            placement=q["placement"],
            k=q["k"],
            device=device_get(request),
            arm_override=q.get("arm"),
        )
        held = cards.product_cards(ids=served.product_ids)
        items = [
            {**card, "score": score}
            for pid, score in zip(served.product_ids, served.scores, strict=True)
            if (card := held.get(pid)) is not None
        ]
        # Built as plain data (the serializer documents it): this is the hottest endpoint, and a nested
        # serializer's per-request field copies cost more than the rest of the view.
        return Response(
            {
                "placement": served.placement,
                "items": items,
                "arm": served.arm,
                "experiment": served.experiment,
                "model_version": served.model_version,
                "source": served.source,
                "reason": served.reason,
                "latency_ms": served.timings_ms,
            }
        )


class ServingStatsQuery(QuerySerializer):
    minutes = serializers.IntegerField(min_value=1, max_value=7 * 24 * 60, default=60)


class ServingStatsApi(APIView):
    """Serving mix (live / batch / popularity / fallback), fallback reasons and latency per minute, and
    the serving model of the process that answers (``process``)."""

    permission_classes = [IsAdminUser]

    @extend_schema(parameters=[ServingStatsQuery], responses={200: OpenApiTypes.OBJECT, 400: _Error})
    def get(self, request):
        query = ServingStatsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        stats.serving_stats_flush()  # this process's counters, so the figures include the last seconds
        status_ = serving.serving_status()
        model = status_.model
        process = {
            "pid": os.getpid(),  # which web process answered (a deployment runs several)
            "model_version": model.version if model else None,
            "snapshot": model.snapshot if model else None,
            "load_seconds": round(model.load_seconds, 3) if model else None,
            "error": status_.error,
            # stage 1 fitted without a model (the heuristic arm while no model serves)
            "stage1_snapshot": stage1.snapshot if (stage1 := serving.serving_stage1()) else None,
            "stage1_error": serving.serving_stage1_error(),
        }
        return Response({**stats.serving_stats(minutes=query.validated_data["minutes"]), "process": process})
