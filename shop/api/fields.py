"""Serializer fields that hold a client to the schema it was given."""

from __future__ import annotations

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A ``CharField`` that refuses numbers as well: DRF would turn ``0`` into ``"0"``, while the
    schema promises a string, so a client sending a number has a bug worth a 400 naming the field."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
