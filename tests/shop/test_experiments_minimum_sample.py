"""No verdict below the minimum sample: each arm needs MIN_VISITORS_PER_ARM visitors and MIN_NONZERO_PER_ARM
visitors with a non-zero value (converters, buyers, cart adders, clickers). Checked at the boundary, on the
case that motivated it (a heavy-tailed revenue difference between 14 and 18 visitors), and through the
results API the console reads."""

from __future__ import annotations

import pytest

from shop.experiments.stats import (
    MIN_NONZERO_PER_ARM,
    MIN_VISITORS_PER_ARM,
    MeanStat,
    RatioStat,
    compare,
    srm,
    verdict,
)
from tests.dashboard.conftest import experiment_traffic  # noqa: F401 - fixture: 40 visitors per arm

SRM_OK = srm(visitors={"popularity": 1, "dlrm": 1}, weights={"popularity": 1, "dlrm": 1})


def _binary(successes: int, n: int) -> MeanStat:
    return MeanStat(n=n, sum=successes, sum_squares=successes, nonzero=successes)


def _say(comparison) -> str:
    return verdict(arm="dlrm", control="popularity", metric="conversion", comparison=comparison, srm_result=SRM_OK)


def test_the_stated_minimum_is_what_the_verdict_says():
    assert (MIN_VISITORS_PER_ARM, MIN_NONZERO_PER_ARM) == (100, 30)
    c = compare(control=_binary(10, 50), arm=_binary(30, 50))
    text = _say(c)
    assert "not enough data yet" in text
    assert "needs 100 visitors and 30 with a non-zero value in each arm" in text
    assert "50 and 50 visitors, 10 and 30 with a non-zero value" in text
    # the control's 10 converters in 50 project to 30 at 150 visitors: 100 more per arm
    assert c.more_visitors_for_minimum == 100 and "about 100 more visitors per arm" in text


@pytest.mark.parametrize(
    ("control_n", "arm_n", "enough"),
    [(99, 200, False), (200, 99, False), (100, 100, True), (100, 101, True)],
)
def test_visitors_boundary(control_n, arm_n, enough):
    # 40% conversion: 40+ converters in every arm, only the visitor count decides
    c = compare(control=_binary(40 * control_n // 100, control_n), arm=_binary(60 * arm_n // 100, arm_n))
    assert c.enough_data is enough
    assert ("not enough data yet" in _say(c)) is not enough
    assert c.more_visitors_for_minimum == (0 if enough else 1)


@pytest.mark.parametrize(("converters", "enough"), [(29, False), (30, True)])
def test_nonzero_boundary_in_either_arm(converters, enough):
    for control, arm in ((_binary(converters, 500), _binary(90, 500)), (_binary(90, 500), _binary(converters, 500))):
        c = compare(control=control, arm=arm)
        assert c.enough_data is enough
        assert ("not enough data yet" in _say(c)) is not enough
        # a large effect, significant at one look either way: only the minimum holds the verdict back
        assert c.significant and c.conclusive is enough


def test_heavy_tailed_revenue_on_14_and_18_visitors_gets_no_verdict():
    control = MeanStat.from_values([0.0] * 11 + [12.0, 15.0, 18.0])
    arm = MeanStat.from_values([0.0] * 10 + [20.0, 25.0, 30.0, 22.0, 35.0, 28.0, 40.0, 400.0])
    c = compare(control=control, arm=arm)
    assert (c.control_n, c.arm_n, c.control_nonzero, c.arm_nonzero) == (14, 18, 3, 8)
    text = verdict(arm="dlrm", control="popularity", metric="Revenue per visitor", comparison=c, srm_result=SRM_OK)
    assert text.startswith("Revenue per visitor: not enough data yet")
    assert "beats" not in text and "ahead of" not in text and not c.conclusive
    # 3 buyers in 14 visitors project to 30 buyers at 140: 126 more per arm
    assert c.more_visitors_for_minimum == 126


def test_ctr_counts_visitors_with_a_click():
    pairs = [(1, 10)] * 30 + [(0, 10)] * 90
    c = compare(control=RatioStat.from_pairs(pairs), arm=RatioStat.from_pairs(pairs[1:] + [(0, 10)]))
    assert (c.control_nonzero, c.arm_nonzero) == (30, 29)
    assert not c.enough_data


def test_a_mismatch_still_comes_first():
    bad = srm(visitors={"popularity": 1000, "dlrm": 700}, weights={"popularity": 1, "dlrm": 1})
    c = compare(control=_binary(2, 20), arm=_binary(9, 20))
    text = verdict(arm="dlrm", control="popularity", metric="conversion", comparison=c, srm_result=bad)
    assert text.startswith("Do not trust")


@pytest.mark.django_db
@pytest.mark.usefixtures("experiment_traffic")
def test_results_api_carries_the_minimum_and_says_not_enough_data():
    """40 visitors per arm (4 / 6 / 10 buyers): below the minimum, for every metric and arm."""
    from rest_framework.test import APIClient

    from tests.factories import UserFactory

    c = APIClient()
    c.force_authenticate(UserFactory(is_staff=True))
    data = c.get("/api/experiments/current/results").json()
    comparisons = [cmp for m in data["metrics"] for cmp in m["comparisons"]]
    assert len(comparisons) == 10  # five metrics x two arms against control
    for cmp in comparisons:
        assert cmp["enough_data"] is False and cmp["conclusive"] is False
        assert (cmp["min_visitors"], cmp["min_nonzero"]) == (MIN_VISITORS_PER_ARM, MIN_NONZERO_PER_ARM)
        assert "not enough data yet" in cmp["verdict"] and cmp["more_visitors_for_minimum"] > 0
    conversion = next(m for m in data["metrics"] if m["primary"])
    dlrm = next(cmp for cmp in conversion["comparisons"] if cmp["arm"] == "dlrm")
    assert (dlrm["control_nonzero"], dlrm["arm_nonzero"]) == (4, 10)
    assert "not enough data yet" in data["verdict"]
