"""The merchant console's API: staff tokens, KPIs, model versions, accelerator latency, visitors.

Everything here is staff-only (``is_staff``); promoting or rolling back a model version also needs the
``recs.change_modelversion`` permission. The console (``dashboard/``) holds no business logic: every
figure it shows is computed here or by the experiment and serving endpoints.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import AllowAny, BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from shop.api.fields import QuerySerializer
from shop.api.schema import detail_response, validation_response
from shop.events.selectors import event_traffic, visitor_list_recent, visitor_recent_events
from shop.orders.selectors import order_revenue
from shop.recs import promotion, runs
from shop.recs.engine import QUALITY_K, training_note
from shop.recs.models import TaskRun
from shop.recs.selectors import (
    accelerator_benchmarks_latest,
    candidates_sweep_latest,
    model_version_list,
    serving_guardrails_by_arm,
)
from shop.recs.stats import serving_stats_flush

CHANGE_MODELS_PERMISSION = "recs.change_modelversion"


def can_change_models(user) -> bool:
    return bool(user and user.is_active and user.is_staff and user.has_perm(CHANGE_MODELS_PERMISSION))


class StaffApi(APIView):
    """Staff only. The token comes first, so a missing or revoked token is a 401 (log in again), not a 403."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser]


def read_schema(*, operation_id: str, summary: str, query, response):
    """The schema of a staff GET whose query parameters ``query`` validates (a bad one is a 400 naming it)."""
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        parameters=[query] if isinstance(query, type) else query,
        responses={200: response, 400: validation_response("Bad parameter.", name=f"{operation_id}_query_error")},
    )


def validated(query: type[serializers.Serializer], data) -> dict:
    form = query(data=data)
    form.is_valid(raise_exception=True)
    return form.validated_data


# -------------------------------------------------------------------------------------------- tokens


class AuthTokenThrottle(ScopedRateThrottle):
    """Password guesses per client address (``AUTH_TOKEN_THROTTLE_RATE``); rates read at call time."""

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class TokenOutSerializer(serializers.Serializer):
    token = serializers.CharField()
    username = serializers.CharField()
    can_change_models = serializers.BooleanField(help_text="May promote and roll back model versions.")


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class AuthTokenApi(APIView):
    """``POST``: a staff account's token for the merchant console. ``DELETE``: log out (revoke it)."""

    authentication_classes = [TokenAuthentication]
    throttle_classes = [AuthTokenThrottle]
    throttle_scope = "auth_token"

    def get_permissions(self):
        return [IsAuthenticated()] if self.request.method == "DELETE" else [AllowAny()]

    def get_throttles(self):
        return super().get_throttles() if self.request.method == "POST" else []

    @extend_schema(
        operation_id="auth_token_create",
        summary="Get the console token of a staff account",
        request=LoginSerializer,
        responses={
            200: TokenOutSerializer,
            400: validation_response("Missing field, or the credentials are wrong.", name="AuthTokenError"),
            403: detail_response("The account is not staff."),
            429: detail_response("Too many attempts from this address."),
        },
    )
    def post(self, request):
        form = AuthTokenSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        user = form.validated_data["user"]
        if not user.is_staff:
            raise PermissionDenied("Only staff accounts may use the merchant console.")
        token, _ = Token.objects.get_or_create(user=user)
        return Response(
            {"token": token.key, "username": user.get_username(), "can_change_models": can_change_models(user)}
        )

    @extend_schema(operation_id="auth_token_destroy", summary="Log out: revoke this token", responses={204: None})
    def delete(self, request):
        Token.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(StaffApi):
    @extend_schema(operation_id="console_me", summary="Who holds this token", responses={200: TokenOutSerializer})
    def get(self, request):
        token = request.auth.key if isinstance(request.auth, Token) else ""
        return Response(
            {
                "token": token,
                "username": request.user.get_username(),
                "can_change_models": can_change_models(request.user),
            }
        )


# ------------------------------------------------------------------------------------------ overview


class OverviewQuery(QuerySerializer):
    minutes = serializers.IntegerField(min_value=1, max_value=60 * 24 * 31, default=60)
    buckets = serializers.IntegerField(min_value=1, max_value=240, default=30)


class OverviewBucketSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    visitors = serializers.IntegerField()
    sessions = serializers.IntegerField()
    events = serializers.IntegerField()
    events_per_minute = serializers.FloatField()
    impressions = serializers.IntegerField()
    clicks = serializers.IntegerField()
    ctr = serializers.FloatField(allow_null=True)
    purchasers = serializers.IntegerField()
    conversion_rate = serializers.FloatField(allow_null=True)
    orders = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)


class OverviewSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    minutes = serializers.IntegerField()
    bucket_seconds = serializers.FloatField()
    visitors = serializers.IntegerField(help_text="Distinct visitors with an event in the window.")
    sessions = serializers.IntegerField(help_text="Visits with an event in the window (30 minutes idle ends one).")
    events = serializers.IntegerField()
    events_per_minute = serializers.FloatField()
    impressions = serializers.IntegerField()
    clicks = serializers.IntegerField()
    ctr = serializers.FloatField(allow_null=True, help_text="Clicks / impressions.")
    purchasers = serializers.IntegerField()
    conversion_rate = serializers.FloatField(allow_null=True, help_text="Visitors with a purchase / visitors.")
    orders = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=False)
    series = OverviewBucketSerializer(many=True)


def _overview(*, minutes: int, buckets: int) -> dict:
    end = timezone.now()
    start = end - dt.timedelta(minutes=minutes)
    traffic = event_traffic(start=start, end=end, buckets=buckets)
    revenue = order_revenue(start=start, end=end, buckets=buckets)
    width_min = (end - start).total_seconds() / 60 / buckets
    series = [
        {
            "start": b.start,
            "visitors": b.visitors,
            "sessions": b.sessions,
            "events": b.events,
            "events_per_minute": b.events / width_min,
            "impressions": b.impressions,
            "clicks": b.clicks,
            "ctr": b.ctr,
            "purchasers": b.purchasers,
            "conversion_rate": b.conversion_rate,
            "orders": orders,
            "revenue": value,
        }
        for b, (orders, value) in zip(traffic.buckets, revenue.buckets, strict=True)
    ]
    return {
        "start": start,
        "end": end,
        "minutes": minutes,
        "bucket_seconds": width_min * 60,
        "visitors": traffic.visitors,
        "sessions": traffic.sessions,
        "events": traffic.events,
        "events_per_minute": traffic.events_per_minute,
        "impressions": traffic.impressions,
        "clicks": traffic.clicks,
        "ctr": traffic.ctr,
        "purchasers": traffic.purchasers,
        "conversion_rate": traffic.conversion_rate,
        "orders": revenue.orders,
        "revenue": revenue.revenue,
        "series": series,
    }


class OverviewApi(StaffApi):
    @read_schema(
        operation_id="console_overview",
        summary="Shop KPIs for the last N minutes, with per-bucket series",
        query=OverviewQuery,
        response=OverviewSerializer,
    )
    def get(self, request):
        return Response(OverviewSerializer(_overview(**validated(OverviewQuery, request.query_params))).data)


# -------------------------------------------------------------------------------------------- models


RANKERS = (
    ("model", "this version (full pipeline)"),
    ("retrieval_only", "stage 1 alone (its own order, same rules)"),
    ("popularity", "popularity (best sellers)"),
)


class QualityRowSerializer(serializers.Serializer):
    ranker = serializers.ChoiceField(choices=[r for r, _ in RANKERS])
    label = serializers.CharField()
    ndcg_at_10 = serializers.FloatField(allow_null=True)
    recall_at_10 = serializers.FloatField(allow_null=True)
    hr_at_10 = serializers.FloatField(allow_null=True)
    users = serializers.IntegerField(allow_null=True, help_text="Holdout users ranked (the same for every row).")
    ndcg_vs_popularity = serializers.FloatField(
        allow_null=True, help_text="This row's NDCG@10 divided by popularity's on the same users."
    )
    best_sellers_at_10 = serializers.FloatField(
        allow_null=True,
        help_text="Share of the users' top-10 places held by the 40 best sellers of the holdout's history "
        "(how far the ranking leans on what every shopper is already shown); null for versions trained before.",
    )
    distinct_at_10 = serializers.IntegerField(
        allow_null=True, help_text="Distinct products across the users' top 10s (null for versions trained before)."
    )


class GateFiguresSerializer(serializers.Serializer):
    users = serializers.IntegerField(help_text="Users of the gate's fresh holdout.")
    challenger_ndcg = serializers.FloatField(allow_null=True)
    popularity_ndcg = serializers.FloatField(allow_null=True)
    champion_ndcg = serializers.FloatField(allow_null=True)
    champion = serializers.CharField(allow_null=True, help_text="The version it was compared with (null: none).")


class TrainingFiguresSerializer(serializers.Serializer):
    rows = serializers.CharField(
        allow_null=True, help_text='How its rows were built: "stage-1 candidates" or "pointwise" (a log too short).'
    )
    exposure_power = serializers.FloatField(
        allow_null=True, help_text="Exposure weighting of the training positives (null: none, or trained before)."
    )
    positives = serializers.IntegerField(allow_null=True, help_text="Training positives (weighted rows).")
    weight_min = serializers.FloatField(allow_null=True)
    weight_max = serializers.FloatField(allow_null=True)
    capped = serializers.IntegerField(allow_null=True, help_text="Positives at the weight cap.")
    model_updates = serializers.IntegerField(
        allow_null=True,
        help_text="Updates the ranker kept after its start (0: no update improved the validation loss, and on a "
        "small log it then ranks as stage 1's order does); null for versions trained before.",
    )
    note = serializers.CharField(
        allow_null=True, help_text="A plain sentence when its ranker kept no update (null otherwise)."
    )


def model_version_training(metrics: dict | None) -> dict:
    """How the version was trained: its rows, their exposure weighting and the updates its ranker kept."""
    metrics = metrics if isinstance(metrics, dict) else {}
    weighting = metrics.get("exposure_weighting") if isinstance(metrics.get("exposure_weighting"), dict) else {}
    return {
        "rows": metrics.get("training_rows"),
        "exposure_power": weighting.get("power"),
        **{k: weighting.get(k) for k in ("positives", "weight_min", "weight_max", "capped")},
        "model_updates": metrics.get("model_updates"),
        "note": training_note(metrics),
    }


def model_version_quality(metrics: dict | None) -> list[dict]:
    """The version's ranking quality at training time beside the baselines measured on the same holdout
    users in the same run (``metrics["baselines"]``; versions trained before baselines were stored have the
    model's row only)."""
    metrics = metrics if isinstance(metrics, dict) else {}
    baselines = metrics.get("baselines") if isinstance(metrics.get("baselines"), dict) else {}
    figures = {"model": metrics, **{name: baselines.get(name) for name, _ in RANKERS[1:]}}
    popular = (figures.get("popularity") or {}).get(f"ndcg@{QUALITY_K}")
    rows = []
    for name, label in RANKERS:
        f = figures.get(name)
        if not isinstance(f, dict) or f.get(f"ndcg@{QUALITY_K}") is None:
            continue
        ndcg = f[f"ndcg@{QUALITY_K}"]
        rows.append(
            {
                "ranker": name,
                "label": label,
                "ndcg_at_10": ndcg,
                "recall_at_10": f.get(f"recall@{QUALITY_K}"),
                "hr_at_10": f.get(f"hr@{QUALITY_K}"),
                "users": f.get("users", f.get("ranked_users")),
                "ndcg_vs_popularity": ndcg / popular if popular else None,
                "best_sellers_at_10": f.get(f"best_sellers@{QUALITY_K}"),
                "distinct_at_10": f.get(f"distinct@{QUALITY_K}"),
            }
        )
    return rows


def model_version_gate(metrics: dict | None) -> dict | None:
    gate = (metrics or {}).get("holdout_gate") if isinstance(metrics, dict) else None
    if not isinstance(gate, dict):
        return None
    return {k: gate.get(k) for k in ("users", "challenger_ndcg", "popularity_ndcg", "champion_ndcg", "champion")}


class ModelVersionSerializer(serializers.Serializer):
    version = serializers.CharField()
    created_at = serializers.DateTimeField()
    status = serializers.CharField()
    is_active = serializers.BooleanField()
    metrics = serializers.JSONField(help_text="Offline metrics at training time (AUC, NDCG@10, ...).")
    quality = serializers.SerializerMethodField(
        help_text="NDCG@10 / Recall@10 / HR@10 of this version and of the baselines on the same users, same run."
    )
    gate = serializers.SerializerMethodField(help_text="The promotion gate's holdout figures (null: not recorded).")
    training = serializers.SerializerMethodField(
        help_text="Its training rows, their exposure weighting and the updates its ranker kept."
    )
    gate_reasons = serializers.ListField(child=serializers.CharField())
    training_seconds = serializers.FloatField()
    examples = serializers.IntegerField(help_text="Training examples.")
    snapshot = serializers.CharField(help_text="The event snapshot it was trained on.")
    device = serializers.CharField()

    @extend_schema_field(QualityRowSerializer(many=True))
    def get_quality(self, obj) -> list[dict]:
        return model_version_quality(obj.metrics)

    @extend_schema_field(GateFiguresSerializer(allow_null=True))
    def get_gate(self, obj) -> dict | None:
        return model_version_gate(obj.metrics)

    @extend_schema_field(TrainingFiguresSerializer)
    def get_training(self, obj) -> dict:
        return model_version_training(obj.metrics)


class ModelListSerializer(serializers.Serializer):
    active = serializers.CharField(allow_null=True)
    can_change_models = serializers.BooleanField()
    versions = ModelVersionSerializer(many=True)


class ModelListApi(StaffApi):
    @extend_schema(operation_id="console_models", summary="Model versions, newest first", responses=ModelListSerializer)
    def get(self, request):
        versions = model_version_list(limit=50)
        active = next((v.version for v in versions if v.is_active), None)
        return Response(
            ModelListSerializer(
                {"active": active, "can_change_models": can_change_models(request.user), "versions": versions}
            ).data
        )


class CanChangeModels(BasePermission):
    message = "Promoting or rolling back a model version needs the recs.change_modelversion permission."

    def has_permission(self, request, view) -> bool:
        return can_change_models(request.user)


_Switched = inline_serializer(
    "ModelSwitched",
    {
        "active": serializers.CharField(),
        "previous": serializers.CharField(allow_null=True),
        "batch_score_task": serializers.CharField(allow_null=True),
    },
)


class ModelSwitchApi(StaffApi):
    """Promote and roll back: the same permission and the same answers (404 unknown version, 409 refused)."""

    permission_classes = [IsAdminUser, CanChangeModels]

    @staticmethod
    def switch(change: Callable[[], promotion.Switch]) -> Response:
        try:
            result = change()
        except promotion.UnknownVersion as e:
            return Response({"detail": str(e)}, status=status.HTTP_404_NOT_FOUND)
        except promotion.CannotSwitch as e:
            return Response({"detail": str(e)}, status=status.HTTP_409_CONFLICT)
        return Response(
            {"active": result.active, "previous": result.previous, "batch_score_task": result.batch_score_task}
        )


class ModelPromoteApi(ModelSwitchApi):
    @extend_schema(
        operation_id="console_model_promote",
        summary="Make a version the serving model",
        request=None,
        responses={
            200: _Switched,
            403: detail_response("Not staff, or no recs.change_modelversion permission."),
            404: detail_response("No such version."),
            409: detail_response("The version's artifact is missing or fails verification."),
        },
    )
    def post(self, request, version: str):
        by = request.user.get_username()
        return self.switch(lambda: promotion.model_version_promote(version=version, by=by))


class ModelRollbackApi(ModelSwitchApi):
    @extend_schema(
        operation_id="console_model_rollback",
        summary="Go back to the previously active version",
        request=None,
        responses={
            200: _Switched,
            403: detail_response("Not staff, or no recs.change_modelversion permission."),
            409: detail_response("Nothing to roll back to."),
        },
    )
    def post(self, request):
        by = request.user.get_username()
        return self.switch(lambda: promotion.model_version_rollback(by=by))


# --------------------------------------------------------------------------------------- accelerator


class BenchmarkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    device = serializers.CharField(help_text="The worker's device that ran it.")
    hostname = serializers.CharField()
    machine = serializers.JSONField()
    quick = serializers.BooleanField()
    cells = serializers.JSONField(
        help_text="One row per device x precision x threads x batch x path (reuse | baseline): p50_ms, p99_ms, "
        "scores_per_s, embedding_p50_ms, mlp_p50_ms, cpu_ms_per_call."
    )
    floors = serializers.JSONField(help_text="Memory bandwidth and matmul GFLOP/s per device and thread count.")
    targets = serializers.JSONField()
    int8_agreement = serializers.JSONField()


class AcceleratorSerializer(serializers.Serializer):
    benchmarks = BenchmarkSerializer(many=True)
    sweep = serializers.JSONField(allow_null=True, help_text="Candidates vs recall@10 and p99 (or null: never run).")


class AcceleratorApi(StaffApi):
    @extend_schema(
        operation_id="console_accelerator",
        summary="Latest accelerator benchmark per worker device, and the candidates sweep",
        responses=AcceleratorSerializer,
    )
    def get(self, request):
        return Response(
            AcceleratorSerializer(
                {"benchmarks": accelerator_benchmarks_latest(), "sweep": candidates_sweep_latest()}
            ).data
        )


_Started = inline_serializer("BenchmarkStarted", {"task_id": serializers.CharField(), "state": serializers.CharField()})
_Busy = inline_serializer("BenchmarkBusy", {"detail": serializers.CharField(), "task_id": serializers.CharField()})


class BenchmarkStartApi(StaffApi):
    @extend_schema(
        operation_id="console_benchmark_start",
        summary="Queue the accelerator benchmark on a worker (the gpu queue)",
        request=None,
        responses={202: _Started, 409: _Busy},
    )
    def post(self, request):
        try:
            run = runs.task_run_start(kind=TaskRun.Kind.BENCHMARK, trigger=f"api:{request.user.get_username()}")
        except runs.AlreadyRunning as e:
            return Response(
                {"detail": "already running", "task_id": str(e.run.id) if e.run else None},
                status=status.HTTP_409_CONFLICT,
            )
        return Response({"task_id": str(run.id), "state": run.state}, status=status.HTTP_202_ACCEPTED)


class GuardrailQuery(QuerySerializer):
    minutes = serializers.IntegerField(min_value=1, max_value=60 * 24 * 7, default=60 * 24)


class GuardrailSerializer(serializers.Serializer):
    arm = serializers.CharField()
    requests = serializers.IntegerField()
    latency_ms_p50 = serializers.FloatField(allow_null=True, help_text="Upper bound of the histogram bucket.")
    latency_ms_p99 = serializers.FloatField(allow_null=True, help_text="Upper bound of the histogram bucket.")
    fallbacks = serializers.IntegerField(help_text="Requests an earlier source did not serve (with a reason).")
    fallback_rate = serializers.FloatField(allow_null=True)


class GuardrailsApi(StaffApi):
    @read_schema(
        operation_id="console_guardrails",
        summary="Serving latency and fallback rate per experiment arm",
        query=GuardrailQuery,
        response=GuardrailSerializer(many=True),
    )
    def get(self, request):
        minutes = validated(GuardrailQuery, request.query_params)["minutes"]
        serving_stats_flush()  # this process's counters too, as the serving-stats endpoint does
        rows = serving_guardrails_by_arm(minutes=minutes)
        return Response(GuardrailSerializer(rows, many=True).data)


# ------------------------------------------------------------------------------------------ visitors


class VisitorListQuery(QuerySerializer):
    minutes = serializers.IntegerField(min_value=1, max_value=60 * 24 * 31, default=60 * 24)
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50)


class ActiveVisitorSerializer(serializers.Serializer):
    visitor_id = serializers.CharField()
    username = serializers.CharField(allow_null=True)
    events = serializers.IntegerField()
    last_seen = serializers.DateTimeField()


class VisitorListApi(StaffApi):
    @read_schema(
        operation_id="console_visitors",
        summary="Visitors seen in the last N minutes, latest first",
        query=VisitorListQuery,
        response=ActiveVisitorSerializer(many=True),
    )
    def get(self, request):
        query = validated(VisitorListQuery, request.query_params)
        since = timezone.now() - dt.timedelta(minutes=query["minutes"])
        rows = visitor_list_recent(since=since, limit=query["limit"])
        return Response(ActiveVisitorSerializer(rows, many=True).data)


class VisitorEventSerializer(serializers.Serializer):
    when = serializers.DateTimeField()
    type = serializers.CharField()
    product_id = serializers.IntegerField()
    product_name = serializers.CharField()
    placement = serializers.CharField()
    position = serializers.IntegerField(allow_null=True)
    arm = serializers.CharField(allow_null=True)
    model_version = serializers.CharField(allow_null=True)


class VisitorHistoryApi(StaffApi):
    @read_schema(
        operation_id="console_visitor_history",
        summary="A visitor's latest events, newest first",
        query=[OpenApiParameter("limit", int, description="1..200, default 50")],
        response=VisitorEventSerializer(many=True),
    )
    def get(self, request, visitor_id):
        limit = validated(VisitorListQuery, {"limit": request.query_params.get("limit", 50)})["limit"]
        rows = visitor_recent_events(visitor_id=visitor_id, limit=limit)
        return Response(VisitorEventSerializer(rows, many=True).data)


auth_urlpatterns = [path("token", AuthTokenApi.as_view(), name="token")]

console_urlpatterns = [
    path("me", MeApi.as_view(), name="me"),
    path("overview", OverviewApi.as_view(), name="overview"),
    path("models", ModelListApi.as_view(), name="models"),
    path("models/rollback", ModelRollbackApi.as_view(), name="model-rollback"),
    path("models/<str:version>/promote", ModelPromoteApi.as_view(), name="model-promote"),
    path("accelerator", AcceleratorApi.as_view(), name="accelerator"),
    path("benchmark", BenchmarkStartApi.as_view(), name="benchmark"),
    path("guardrails", GuardrailsApi.as_view(), name="guardrails"),
    path("visitors", VisitorListApi.as_view(), name="visitors"),
    path("visitors/<uuid:visitor_id>/events", VisitorHistoryApi.as_view(), name="visitor-events"),
]
