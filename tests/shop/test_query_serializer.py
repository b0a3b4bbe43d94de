"""Query serializers copy their declared fields shallowly: each instance still gets its own bound fields."""

from __future__ import annotations

import threading

import pytest
from django.http import QueryDict
from rest_framework import serializers

from shop.api.fields import QuerySerializer
from shop.recs.api import RecommendationsQuery


class _Query(QuerySerializer):
    k = serializers.IntegerField(min_value=1, max_value=10, default=3)
    ids = serializers.ListField(child=serializers.IntegerField(), required=False)


def test_each_instance_binds_its_own_copies_and_the_declared_fields_stay_unbound():
    a, b = _Query(data={}), _Query(data={})
    assert a.fields["k"] is not b.fields["k"]
    assert a.fields["k"].parent is a and b.fields["k"].parent is b
    declared = _Query._declared_fields["k"]
    assert declared.field_name is None and getattr(declared, "parent", None) is None
    # a field holding a child is deep-copied, so the child is this instance's too
    assert a.fields["ids"].child is not b.fields["ids"].child
    assert a.fields["ids"].child.parent is a.fields["ids"]


@pytest.mark.parametrize(
    "query,ok",
    [("placement=home.recommended&k=5", True), ("placement=home.recommended&k=0", False), ("placement=nowhere", False)],
)
def test_validation_is_the_same_for_every_instance_and_thread(query, ok):
    """Instances made at once on several threads validate alike: nothing a request sets is shared."""
    results = []

    def run():
        for _ in range(50):
            q = RecommendationsQuery(data=QueryDict(query))
            results.append((q.is_valid(), q.validated_data.get("k") if q.is_valid() else tuple(sorted(q.errors))))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1, set(results)
    valid, detail = results[0]
    assert valid is ok
    assert detail == (5 if ok else ("k",) if "k=0" in query else ("placement",))
