"""The holdout gate judges a model through the rules the shop serves with."""

from django.conf import settings

from recommender.pipeline import PipelineConfig


def test_the_gate_ranks_with_the_shops_default_category_cap():
    """``recommender.holdout.served_ranking`` builds its pipeline with ``PipelineConfig``'s defaults; the shop's
    rails use RECS_MAX_PER_CATEGORY (0: no cap). A cap of 3 in one and none in the other gated a different
    list from the one served."""
    assert PipelineConfig().max_per_category == (settings.RECS_MAX_PER_CATEGORY or None)
