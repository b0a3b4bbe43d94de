"""Stage 3: the rules over a ranked list, the explore slots, and how their number is chosen."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.rules import (
    apply_rules,
    boosted_order,
    choose_explore_policy,
    choose_explore_slots,
    explore_recall_by_slots,
)


def test_explore_slots_keep_the_best_new_items_in_rank_order():
    rows = np.arange(8)
    new = np.array([0, 0, 0, 0, 1, 0, 1, 1], bool)
    assert apply_rules(rows, k=4).tolist() == [0, 1, 2, 3]
    # two slots: positions 4 and 6 (the best two new items) displace the two weakest old ones
    assert apply_rules(rows, k=4, explore=new, explore_slots=2).tolist() == [0, 1, 4, 6]
    # fewer new items than slots: the rest go to the best of the rest
    assert apply_rules(rows, k=4, explore=np.eye(8, dtype=bool)[5], explore_slots=3).tolist() == [0, 1, 2, 5]
    # stock and exclusions first; a new item out of stock is not kept
    in_stock = np.ones(8, bool)
    in_stock[4] = False
    assert apply_rules(rows, k=4, in_stock=in_stock, exclude=[0], explore=new, explore_slots=2).tolist() == [1, 2, 6, 7]


def test_explore_slots_with_the_category_cap_still_fill_k():
    rows = np.arange(6)
    category = np.array([0, 1, 2, 0, 0, 3])
    new = np.array([0, 0, 0, 0, 1, 1], bool)
    # slot for position 4 is blocked by the cap (category 0 already once): the next that passes fills it
    out = apply_rules(rows, k=4, category=category, max_per_category=1, explore=new, explore_slots=2)
    assert out.tolist() == [0, 1, 2, 5]


def test_slot_table_by_hand():
    # two requests in stage 1's order; request 0: old positive ranked first by the model, new positive third
    group = np.array([0, 0, 0, 0, 1, 1, 1])
    score = np.array([0.9, 0.8, 0.1, 0.7, 0.9, 0.5, 0.4])
    label = np.array([1, 0, 1, 0, 0, 1, 0])
    new = np.array([0, 0, 1, 1, 0, 1, 1], bool)
    t = explore_recall_by_slots(group, score, label, new, k=2, max_slots=2)
    # 0 slots: top-2 by score: request 0 {0, 1} -> 1/2; request 1 {4, 5} -> 1/1; explore: 0/1 and 1/1
    # 1 slot: request 0 {0, 3} (best new is row 3, 0.7) -> 1/2, explore 0; request 1 {4, 5} -> same
    # 2 slots: request 0 {3, 2} -> 1/2, explore 1; request 1 {5, 6} -> 1, explore 1
    assert t["slots"] == [0, 1, 2]
    assert t["recall"] == pytest.approx([0.75, 0.75, 0.75])
    assert t["explore_recall"] == pytest.approx([0.5, 0.5, 1.0])
    # stage 1's order (row order): request 0 {0, 1} -> explore 0; request 1 {4, 5} -> explore 1
    assert t["stage1_explore_recall"] == pytest.approx(0.5) and t["stage1_recall"] == pytest.approx(0.75)
    assert choose_explore_slots(t) == 0
    t["stage1_explore_recall"] = 0.9
    assert choose_explore_slots(t) == 2
    t["stage1_explore_recall"] = 1.5  # never reached: the allowed count with the best explore recall
    assert choose_explore_slots(t) == 2
    # slots that cost overall recall beyond the tolerance are never chosen, even to reach stage 1's explore
    # recall (a shop whose next items are mostly ones the customer saw before: all 10 slots for new items
    # would hide them)
    shop = {
        "slots": [0, 1, 2, 3],
        "recall": [0.40, 0.39, 0.30, 0.10],
        "explore_recall": [0.05, 0.06, 0.10, 0.20],
        "stage1_explore_recall": 0.15,
    }
    assert choose_explore_slots(shop) == 1
    assert choose_explore_slots(shop, tolerance=0.30) == 2
    assert choose_explore_slots(shop, tolerance=1.0) == 3
    # the validation figures the Ta Feng run printed: 4 slots cost 3% of recall and reach stage 1's 0.1455
    ta_feng = {
        "slots": list(range(11)),
        "recall": [0.3185, 0.3183, 0.3160, 0.3123, 0.3091, 0.2992, 0.2888, 0.2704, 0.2473, 0.2111, 0.1518],
        "explore_recall": [0.0968, 0.1002, 0.1112, 0.1254, 0.1461, 0.1653, 0.1849, 0.2029, 0.2206, 0.2380, 0.2542],
        "stage1_explore_recall": 0.1455,
    }
    assert choose_explore_slots(ta_feng) == 4
    assert choose_explore_slots({"stage1_explore_recall": float("nan")}) == 0


def test_the_explore_boost_ranks_new_items_by_log_p_plus_boost():
    logits = np.array([3.0, 0.0, -0.5, -3.0])  # p ~ 0.95, 0.5, 0.38, 0.047
    new = np.array([False, False, True, True])
    assert boosted_order(logits, new, 0.0).tolist() == [0, 1, 2, 3]
    assert boosted_order(logits, None, 2.0).tolist() == [0, 1, 2, 3]
    # log 0.38 + 0.5 > log 0.5: the weak repeat item gives way first, the near-certain one keeps its place
    assert boosted_order(logits, new, 0.5).tolist() == [0, 2, 1, 3]
    # log 0.047 + 3 > log 0.95: a large boost puts every new item first, in score order
    assert boosted_order(logits, new, 3.5).tolist() == [2, 3, 0, 1]


def test_boost_and_popularity_columns_of_the_validation_table_by_hand():
    group = np.array([0, 0, 0, 0, 1, 1, 1])
    prob = np.array([0.9, 0.8, 0.1, 0.7, 0.9, 0.5, 0.4])
    label = np.array([1, 0, 1, 0, 0, 1, 0])
    new = np.array([0, 0, 1, 1, 0, 1, 1], bool)
    popularity = np.array([1, 2, 9, 3, 5, 1, 8])
    t = explore_recall_by_slots(group, prob, label, new, k=2, max_slots=2, popularity=popularity, boosts=(0.2, 3.0))
    # popularity order: request 0 {2, 3} -> 1/2, explore 1/1; request 1 {6, 4} -> 0/1, explore 0/1
    assert t["popularity_recall"] == pytest.approx(0.25) and t["popularity_explore_recall"] == pytest.approx(0.5)
    # boost 0.2 (x1.22): request 0 keys 0.9, 0.8, 0.12, 0.85 -> {0, 3}; request 1 0.9, 0.61, 0.49 -> {4, 5}
    # boost 3 (x20): new items first: request 0 {3, 2} -> 1/2, explore 1; request 1 {5, 6} -> 1, explore 1
    assert t["boosts"] == [0.2, 3.0]
    assert t["boost_recall"] == pytest.approx([0.75, 0.75])
    assert t["boost_explore_recall"] == pytest.approx([0.5, 1.0])
    # all cost the same recall here; 2 slots and boost 3 find the most new items: the boost (no slots) wins
    assert choose_explore_policy(t, min_requests=2) == (0, 3.0)
    assert choose_explore_policy(t) == (0, 0.0)  # 2 requests: too few to spend recall on


def test_the_explore_policy_prefers_the_boost_when_it_costs_less_recall():
    table = {
        "slots": [0, 1, 2, 3],
        "recall": [0.40, 0.39, 0.37, 0.30],
        "explore_recall": [0.05, 0.08, 0.12, 0.20],
        "stage1_explore_recall": 0.10,
        "popularity_explore_recall": 0.11,
        "boosts": [0.5, 1.0, 2.0],
        "boost_recall": [0.395, 0.385, 0.35],
        "boost_explore_recall": [0.09, 0.115, 0.16],
    }
    # in budget (>= 0.38): slots 0, 1 and boosts 0.5, 1.0; the most new items: boost 1.0 (2 slots find more
    # but cost 7.5% of recall)
    assert choose_explore_policy(table) == (0, 1.0)
    assert choose_explore_policy(table, tolerance=0.08) == (2, 0.0)
    assert choose_explore_policy(table, tolerance=0.0) == (0, 0.0)  # no budget: the best recall
    # the whole-log Ta Feng validation table (2,352 requests): the cheapest policy reaching stage 1's explore
    # recall (boost 0.5) tied popularity's explore recall on the test; the budget buys boost 0.75
    ta_feng = {
        "slots": list(range(11)),
        "recall": [0.3196, 0.3193, 0.3173, 0.3137, 0.3114, 0.3023, 0.2907, 0.2706, 0.2525, 0.2152, 0.1567],
        "explore_recall": [0.1081, 0.1094, 0.1133, 0.1298, 0.1508, 0.1673, 0.1876, 0.2035, 0.2276, 0.2453, 0.2615],
        "boosts": [0.25, 0.5, 0.75, 1.0, 1.25],
        "boost_recall": [0.3164, 0.3125, 0.3057, 0.2896, 0.2705],
        "boost_explore_recall": [0.1270, 0.1517, 0.1774, 0.2024, 0.2241],
    }
    assert choose_explore_policy(ta_feng) == (0, 0.75)
    nothing = {"slots": [0, 1], "recall": [0.3, 0.2], "explore_recall": [float("nan")] * 2, "boosts": [0.5],
               "boost_recall": [0.25], "boost_explore_recall": [float("nan")]}  # fmt: skip
    assert choose_explore_policy(nothing) == (0, 0.0)
    # a table without boosts (an artifact's metrics from before) answers as choose_explore_slots
    old = {k: v for k, v in table.items() if not k.startswith("boost")}
    assert choose_explore_policy(old) == (choose_explore_slots(old), 0.0)
