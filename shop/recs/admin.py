from django.contrib import admin

from .models import AcceleratorBenchmark, ModelVersion, ScoreSet, ServingPointer, TaskRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("version", "status", "is_active", "training_seconds", "examples", "device", "created_at")
    list_filter = ("status",)


@admin.register(TaskRun)
class TaskRunAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "state", "stage", "percent", "device", "deliveries", "created_at", "finished_at")
    list_filter = ("kind", "state")
    readonly_fields = [f.name for f in TaskRun._meta.fields]


@admin.register(ScoreSet)
class ScoreSetAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "model_version", "rows", "visitors", "created_at", "completed_at")


admin.site.register(ServingPointer)
admin.site.register(AcceleratorBenchmark)
