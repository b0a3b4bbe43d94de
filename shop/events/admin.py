"""Merchant admin for the interaction log: read-only (events are facts, never edited)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet

from shop.api.admin_tools import EstimatedCountPaginator

from .models import Event, Visitor

RECENT_SAMPLE = 20_000


class RecentValuesFilter(admin.SimpleListFilter):
    """Values of a free-text column seen among the most recent events.

    A plain ``list_filter = ["placement"]`` runs ``SELECT DISTINCT`` over the whole log on every
    page load; the newest rows (read through the primary key) name every live slot or arm.
    """

    def lookups(self, request, model_admin):
        recent = Event.objects.order_by("-id").values("pk")[:RECENT_SAMPLE]
        values = (
            Event.objects.filter(pk__in=recent)
            .exclude(**{f"{self.parameter_name}__isnull": True})
            .order_by(self.parameter_name)
            .values_list(self.parameter_name, flat=True)
            .distinct()
        )
        return [(value, value or "(none)") for value in values]

    def queryset(self, request, queryset: QuerySet[Event]) -> QuerySet[Event]:
        if self.value() is not None:
            return queryset.filter(**{self.parameter_name: self.value()})
        return queryset


class PlacementFilter(RecentValuesFilter):
    title = "placement"
    parameter_name = "placement"


class ArmFilter(RecentValuesFilter):
    title = "experiment arm"
    parameter_name = "arm"


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = [
        "occurred_at",
        "type",
        "product",
        "visitor_ref",
        "user",
        "placement",
        "position",
        "source",
        "arm",
        "model_version",
    ]
    list_filter = ["type", "source", PlacementFilter, ArmFilter]
    list_select_related = ["product", "user"]
    search_fields = ["=idempotency_key", "=visitor__id"]
    search_help_text = "Exact idempotency key (e.g. add:1234...) or visitor id."
    date_hierarchy = "occurred_at"
    ordering = ["-occurred_at"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="visitor", ordering="visitor_id")
    def visitor_ref(self, obj: Event) -> str:
        # the id is on the row already: no join to the visitor table
        return str(obj.visitor_id)


@admin.register(Visitor)
class VisitorAdmin(admin.ModelAdmin):
    """Visitors are created by the shop; a merchant may only attach or detach a user."""

    list_display = ["id", "user", "external_id", "created_at"]
    list_select_related = ["user"]
    search_fields = ["=id", "=external_id", "user__username", "user__email"]
    date_hierarchy = "created_at"
    fields = ["id", "user", "external_id", "attributes", "created_at"]
    readonly_fields = ["id", "external_id", "attributes", "created_at"]
    raw_id_fields = ["user"]
    ordering = ["-created_at"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
