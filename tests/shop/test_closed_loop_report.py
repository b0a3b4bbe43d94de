"""The closed loop's head-to-head lines (dlrm against heuristic): the figures beside the always-valid interval the
lift table gives, and a plain warning when a difference holds at this single look only."""

from __future__ import annotations

import datetime as dt
import io

from rich.console import Console

from shop.experiments.analysis import VisitorRow, proportion_head_to_head, results_compute
from shop.experiments.assignment import ArmSpec, ExperimentSpec
from shop.experiments.management.commands.closed_loop import Command


def _results(buyers: dict[str, int], visitors: int):
    spec = ExperimentSpec(
        key="e",
        salt="s",
        arms=(ArmSpec("popularity", 1, True), ArmSpec("heuristic", 1, False), ArmSpec("dlrm", 1, False)),
    )
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [
        VisitorRow(arm, when, "", int(i < n), 10.0 * (i < n), i < n, 4, 1)
        for arm, n in buyers.items()
        for i in range(visitors)
    ]
    return results_compute(experiment=spec, rows=rows)


def _printed(results) -> str:
    command = Command()
    out = io.StringIO()
    command.console = Console(file=out, width=400, soft_wrap=True)
    command._print_power(results)
    return out.getvalue()


def test_a_single_look_difference_is_printed_with_its_always_valid_interval_and_a_warning():
    results = _results({"popularity": 80, "heuristic": 100, "dlrm": 130}, visitors=500)
    head = proportion_head_to_head(results=results, metric="conversion", baseline="heuristic", arm="dlrm")
    assert head.significant and not head.sequentially_significant  # p = 0.049 at one look; the case in question
    line = next(x for x in _printed(results).splitlines() if x.startswith("dlrm against heuristic, conversion:"))
    assert f"lift {head.lift:+.1%} (95% CI {head.ci_low:+.1%} to {head.ci_high:+.1%}, p = {head.p_value:.3f}" in line
    assert f"always-valid {head.seq_ci_low:+.1%} to {head.seq_ci_high:+.1%})." in line
    assert line.endswith("Significant at this single look only: the always-valid interval does not confirm it.")


def test_no_warning_when_the_single_look_interval_crosses_zero():
    results = _results({"popularity": 80, "heuristic": 25, "dlrm": 35}, visitors=100)
    head = proportion_head_to_head(results=results, metric="conversion", baseline="heuristic", arm="dlrm")
    assert not head.significant
    line = next(x for x in _printed(results).splitlines() if x.startswith("dlrm against heuristic, conversion:"))
    assert f"always-valid {head.seq_ci_low:+.1%} to {head.seq_ci_high:+.1%})." in line
    assert "single look only" not in line


def test_too_few_converters_for_a_verdict_is_said_and_no_difference_is_claimed():
    # as in a demo run whose two personal arms served identical lists: 12 buyers through a rail in one arm,
    # 31 in the other, a "difference" at p < 0.001 by the lift's delta method on counts too small to judge
    results = _results({"popularity": 40, "heuristic": 31, "dlrm": 12}, visitors=170)
    head = proportion_head_to_head(results=results, metric="conversion", baseline="heuristic", arm="dlrm")
    assert head.significant and head.p_value < 0.01
    assert (head.control_nonzero, head.arm_nonzero) == (31, 12) and not head.enough_data
    line = next(x for x in _printed(results).splitlines() if x.startswith("dlrm against heuristic, conversion:"))
    assert f"p = {head.p_value:.3f}" in line
    assert line.endswith(
        "Too few to judge: 31 and 12 visitors with a conversion; a verdict needs 30 in each arm (and 100 visitors)."
    )
    assert "Significant" not in line
