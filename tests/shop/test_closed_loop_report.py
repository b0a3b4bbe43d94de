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
