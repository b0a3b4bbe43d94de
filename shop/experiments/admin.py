from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from .models import Arm, Experiment
from .services import experiment_start, experiment_stop, experiment_validate_arms


class ArmFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        arms = [
            (f.cleaned_data["key"], f.cleaned_data.get("weight") or 0, bool(f.cleaned_data.get("is_control")))
            for f in self.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        try:
            experiment_validate_arms(arms=arms)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["arms"]) from exc


class ArmInline(admin.TabularInline):
    model = Arm
    formset = ArmFormSet
    extra = 0
    min_num = 2


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "status", "arm_weights", "started_at", "stopped_at")
    list_filter = ("status",)
    search_fields = ("key", "name")
    inlines = [ArmInline]
    readonly_fields = ("salt", "status", "created_at", "started_at", "stopped_at")
    actions = ["start", "start_resalted", "stop"]

    @admin.display(description="Arms (weight)")
    def arm_weights(self, obj: Experiment) -> str:
        return ", ".join(f"{a.key}{'*' if a.is_control else ''} ({a.weight})" for a in obj.arms.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("arms")

    def _start(self, request, queryset, *, resalt: bool) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one experiment to start.", messages.ERROR)
            return
        try:
            experiment = experiment_start(experiment=queryset.get(), resalt=resalt)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return
        self.message_user(request, f"{experiment.key} is running; any other experiment was stopped.")

    @admin.action(description="Start (stops the running one; resumes a stopped one with its salt)")
    def start(self, request, queryset) -> None:
        self._start(request, queryset, resalt=False)

    @admin.action(description="Start with a new salt (reshuffles every visitor's arm)")
    def start_resalted(self, request, queryset) -> None:
        self._start(request, queryset, resalt=True)

    @admin.action(description="Stop")
    def stop(self, request, queryset) -> None:
        for experiment in queryset.filter(status=Experiment.Status.RUNNING):
            experiment_stop(experiment=experiment)
        self.message_user(request, "Stopped.")
