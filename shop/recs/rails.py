"""A rail source backed by the precomputed recommendations (plug in with ``placement_register``)."""

from __future__ import annotations

from shop.catalog.rails import CANDIDATE_POOL, Candidates, RailContext, popular_ids

from .models import ServingPointer
from .selectors import recommendations_for_visitor


def recommended_ids(context: RailContext) -> Candidates:
    """The visitor's precomputed list from the serving score set; popular products when there is none."""
    if context.visitor_id is not None:
        ids = recommendations_for_visitor(visitor_id=context.visitor_id, limit=CANDIDATE_POOL)
        if ids:
            version = (
                ServingPointer.objects.filter(id=1).values_list("score_set__model_version__version", flat=True).first()
            )
            return Candidates(ids=ids, arm="precomputed", model_version=version)
    return Candidates(ids=popular_ids(context), arm="popular")
