"""The ranked search document, stored (PostgreSQL): ``setweight(name, 'A') || setweight(description, 'D')``
as a generated column, so ranking a search's matches reads a vector instead of parsing every matching
product's name and description again (a term matching 1,000 of 5,000 products spent 35 of its 37 ms
there). The model does not declare the column: only ``catalog.search`` reads it, and PostgreSQL keeps
it in step with every write. SQLite keeps its ``icontains`` scan and gets nothing."""

from django.db import migrations

COLUMN = "search_ranked"  # keep in step with shop.catalog.search.RANKED_COLUMN


def _table(apps, schema_editor) -> str:
    return schema_editor.quote_name(apps.get_model("catalog", "Product")._meta.db_table)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"ALTER TABLE {_table(apps, schema_editor)} ADD COLUMN {schema_editor.quote_name(COLUMN)} tsvector "
        "GENERATED ALWAYS AS ("
        "setweight(to_tsvector('simple'::regconfig, COALESCE(name, '')), 'A') || "
        "setweight(to_tsvector('simple'::regconfig, COALESCE(description, '')), 'D')"
        ") STORED"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE {_table(apps, schema_editor)} DROP COLUMN {schema_editor.quote_name(COLUMN)}")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0003_product_search_index")]

    operations = [migrations.RunPython(forwards, backwards)]
