"""The benchmarks' percentile interval: distribution-free, from order statistics."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness import ci_text, latency_summary_ms, percentile_ci


def test_median_interval_is_the_textbook_order_statistics():
    # n = 100: the 95% interval of the median runs from the 40th to the 61st smallest (Conover's table)
    values = list(range(1, 101))
    assert percentile_ci(values, 50) == (40.0, 61.0)


def test_p99_interval_covers_the_true_p99_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    true_p99 = float(np.exp(1.0 + 0.8 * 2.3263478740408408))  # lognormal(1, 0.8): mu + sigma * z(0.99)
    hits = 0
    for _ in range(400):
        sample = np.sort(rng.lognormal(1.0, 0.8, 800))
        low, high = percentile_ci(sample, 99)
        hits += low <= true_p99 <= high
    assert 0.92 <= hits / 400 <= 0.99


def test_too_few_samples_leave_the_upper_bound_open_and_the_summary_says_so():
    low, high = percentile_ci([1.0, 2.0, 3.0, 4.0, 5.0], 99)
    assert (low, high) == (4.0, None)
    summary = latency_summary_ms([0.001 * i for i in range(1, 801)])
    assert summary["p99_ms"] == 792.0
    lo, hi = summary["p99_ci_ms"]
    assert lo < summary["p99_ms"] < hi <= summary["max_ms"]
    assert ci_text([4.0, None]) == ">4.0" and ci_text([1.25, 2.5]) == "1.2-2.5" and ci_text(None) == ""
    with pytest.raises(ValueError):
        percentile_ci([], 99)
