"""Validation of the beacon/event batch contract (``POST /api/events``)."""

from __future__ import annotations

from rest_framework import serializers

from shop.api.fields import StrictCharField

from .models import CLIENT_EVENT_CHOICES, CLIENT_EVENT_TYPES, SERVER_KEY_PREFIXES, Event
from .selectors import event_product_ids_known

_POSITION_MAX = 32767  # PositiveSmallIntegerField
_EVENT_TYPES = frozenset(t.value for t in CLIENT_EVENT_TYPES)
_KEY_MAX = Event._meta.get_field("idempotency_key").max_length
_PLACEMENT_MAX = Event._meta.get_field("placement").max_length
_DEVICE_MAX = Event._meta.get_field("device").max_length


def _plain_text(value, max_length: int) -> bool:
    """A string DRF's CharField would return unchanged: ASCII, no NUL, no outer whitespace."""
    return (
        type(value) is str
        and len(value) <= max_length
        and value.isascii()
        and "\x00" not in value
        and value == value.strip()
    )


class EventItemSerializer(serializers.Serializer):
    type = serializers.ChoiceField(
        choices=CLIENT_EVENT_CHOICES,
        help_text="Only what a browser sees: views, cart changes and purchases are logged by the server.",
    )
    product_id = serializers.IntegerField(min_value=1)
    idempotency_key = StrictCharField(
        max_length=_KEY_MAX,
        help_text=(
            "Unique per interaction of this visitor, e.g. imp:{page_view_id}:{placement}:{position}; a replay is "
            "stored once. Keys starting with a server prefix (" + ", ".join(SERVER_KEY_PREFIXES) + ") are refused."
        ),
    )
    placement = StrictCharField(
        max_length=_PLACEMENT_MAX,
        allow_blank=True,
        default="",
        help_text='Where the product was shown, e.g. "home.new_arrivals".',
    )
    position = serializers.IntegerField(
        min_value=0, max_value=_POSITION_MAX, allow_null=True, default=None, help_text="0-based slot in the placement."
    )
    page_view_id = serializers.UUIDField(allow_null=True, default=None)
    occurred_at = serializers.DateTimeField(allow_null=True, default=None, help_text="ISO-8601; null: time received.")
    device = StrictCharField(max_length=_DEVICE_MAX, allow_blank=True, allow_null=True, default="")

    def validate_device(self, value: str | None) -> str:
        return value or ""

    def validate_idempotency_key(self, value: str) -> str:
        if value.startswith(SERVER_KEY_PREFIXES):
            raise serializers.ValidationError(f'Keys starting with "{value.split(":", 1)[0]}:" are the server\'s.')
        return value

    def to_internal_value(self, data):
        # The ingest hot path: a well-formed event (what the beacon always sends) is converted
        # here at a fraction of DRF's per-field cost; anything unusual takes DRF's own path,
        # which produces the result or the error messages. Both paths return the same values
        # (tests/shop/test_api_events.py::test_fast_path_matches_drf).
        fast = self._fast_internal_value(data)
        return fast if fast is not None else super().to_internal_value(data)

    def _fast_internal_value(self, data) -> dict | None:
        return event_item_fast(data, converters=_Converters(self.fields))


class _Converters:
    """DRF's own conversions of ``page_view_id`` and ``occurred_at``, memoised per batch.

    The events of one page view share both values, so a 500-event batch parses a few dozen
    strings instead of a thousand; a value DRF refuses raises ``ValidationError`` as it would.
    """

    __slots__ = ("_uuid", "_time", "_uuids", "_times")

    def __init__(self, fields) -> None:
        self._uuid = fields["page_view_id"].to_internal_value
        self._time = fields["occurred_at"].to_internal_value
        self._uuids: dict = {}
        self._times: dict = {}

    def uuid(self, value):
        if type(value) is not str:
            return self._uuid(value)
        out = self._uuids.get(value)
        if out is None:
            out = self._uuids[value] = self._uuid(value)
        return out

    def time(self, value):
        if type(value) is not str:
            return self._time(value)
        out = self._times.get(value)
        if out is None:
            out = self._times[value] = self._time(value)
        return out


def event_item_fast(data, *, converters: _Converters) -> dict | None:
    """``EventItemSerializer``'s validated data for a well-formed event, or None: use DRF.

    Returns None (never a different answer) for anything DRF might treat differently: wrong
    types, strings DRF would trim or refuse, out-of-range numbers, unparsable ids or times.
    """
    if type(data) is not dict:
        return None
    type_, product_id, key = data.get("type"), data.get("product_id"), data.get("idempotency_key")
    if type(type_) is not str or type_ not in _EVENT_TYPES or type(product_id) is not int or product_id < 1:
        return None
    if not key or not _plain_text(key, _KEY_MAX) or key.startswith(SERVER_KEY_PREFIXES):
        return None
    placement, device = data.get("placement", ""), data.get("device", "")
    if not _plain_text(placement, _PLACEMENT_MAX) or not (device is None or _plain_text(device, _DEVICE_MAX)):
        return None
    position = data.get("position")
    if position is not None and (type(position) is not int or not 0 <= position <= _POSITION_MAX):
        return None
    page_view_id, occurred_at = data.get("page_view_id"), data.get("occurred_at")
    try:
        if page_view_id is not None:
            page_view_id = converters.uuid(page_view_id)
        if occurred_at is not None:
            occurred_at = converters.time(occurred_at)
    except serializers.ValidationError:
        return None
    return {
        "type": type_,
        "product_id": product_id,
        "idempotency_key": key,
        "placement": placement,
        "position": position,
        "page_view_id": page_view_id,
        "occurred_at": occurred_at,
        "device": device or "",
    }


class EventBatchSerializer(serializers.Serializer):
    visitor_id = serializers.UUIDField(
        required=False,
        help_text="Staff tokens only (imports, tools): whose events these are. Anyone else is 403.",
    )
    events = EventItemSerializer(many=True, help_text="At most EVENTS_MAX_BATCH (500) events.")

    def validate_events(self, events: list[dict]) -> list[dict]:
        known = event_product_ids_known(product_ids=(e["product_id"] for e in events))
        errors = {
            index: {"product_id": [f"Unknown product {e['product_id']}."]}
            for index, e in enumerate(events)
            if e["product_id"] not in known
        }
        if errors:
            raise serializers.ValidationError(errors)
        return events


def event_batch_validate(data) -> dict | None:
    """``EventBatchSerializer(data=data).validated_data`` for a well-formed batch, without DRF.

    Returns None when anything is unusual or wrong (an event the fast path declines, an unknown
    product, a bad ``visitor_id``): the caller then runs the serializer, which either accepts it
    the slow way or builds the 400 body naming the event and field.
    """
    if type(data) is not dict:
        return None
    events = data.get("events")
    if type(events) is not list:
        return None
    validated: dict = {}
    if "visitor_id" in data:
        visitor_id = data["visitor_id"]
        if type(visitor_id) is not str:
            return None
        try:
            validated["visitor_id"] = _BATCH_FIELDS["visitor_id"].to_internal_value(visitor_id)
        except serializers.ValidationError:
            return None
    converters = _Converters(_ITEM_FIELDS)
    items = []
    for event in events:
        item = event_item_fast(event, converters=converters)
        if item is None:
            return None
        items.append(item)
    known = event_product_ids_known(product_ids=(e["product_id"] for e in items))
    if any(e["product_id"] not in known for e in items):
        return None
    validated["events"] = items
    return validated


# Bound field instances whose conversions the fast path borrows (stateless once bound).
_ITEM_FIELDS = EventItemSerializer().fields
_BATCH_FIELDS = EventBatchSerializer().fields


class EventBatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Events stored by this request.")
    duplicates = serializers.IntegerField(help_text="Events whose idempotency key was already stored (or repeated).")


class EventBatchErrorSerializer(serializers.Serializer):
    """400 body: DRF validation errors, or ``detail`` for a body that is not JSON."""

    events = serializers.JSONField(
        required=False,
        help_text=(
            'Event index (0-based, as a string) -> field -> messages, or {"non_field_errors": [...]}; '
            "a list of messages when `events` itself is missing or not a list."
        ),
    )
    visitor_id = serializers.ListField(child=serializers.CharField(), required=False)
    non_field_errors = serializers.ListField(child=serializers.CharField(), required=False)
    detail = serializers.CharField(required=False, help_text="Malformed JSON.")
