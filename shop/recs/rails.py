"""Rail sources backed by the precomputed recommendations of the serving score set.

Registered by ``RecsConfig.ready`` for the personalised placements (``home.recommended``,
``cart.recommended``): the storefront's pages do not change, only the source behind the slot.
"""

from __future__ import annotations

from shop.catalog.rails import CANDIDATE_POOL, Candidates, Placement, RailContext, placement_register

from .models import ServingPointer
from .selectors import recommendations_for_visitor


def recommended_ids(context: RailContext) -> Candidates:
    """The visitor's precomputed list from the serving score set; empty (rail hidden) when there is none."""
    if context.visitor_id is None:
        return Candidates(ids=[])
    ids = recommendations_for_visitor(visitor_id=context.visitor_id, limit=CANDIDATE_POOL)
    if not ids:
        return Candidates(ids=[])
    version = ServingPointer.objects.filter(id=1).values_list("score_set__model_version__version", flat=True).first()
    return Candidates(ids=ids, arm="precomputed", model_version=version)


def register_recommendation_placements() -> None:
    placement_register(Placement("home.recommended", "Recommended for you", recommended_ids))
    placement_register(Placement("cart.recommended", "Picked for you", recommended_ids))
