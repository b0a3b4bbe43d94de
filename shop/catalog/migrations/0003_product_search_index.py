"""Full-text search over product names and descriptions on PostgreSQL (a GIN index on the very
expression ``catalog.search`` filters on); SQLite keeps its ``icontains`` scan and gets nothing."""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations

INDEX_NAME = "product_search_idx"


def _index() -> GinIndex:
    # the expression search matched on until migration 0006 replaced this index
    return GinIndex(SearchVector("name", "description", config="simple"), name=INDEX_NAME)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.add_index(apps.get_model("catalog", "Product"), _index())


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.remove_index(apps.get_model("catalog", "Product"), _index())


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_popularity")]

    operations = [migrations.RunPython(forwards, backwards)]
