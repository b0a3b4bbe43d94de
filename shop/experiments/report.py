"""The lift table as rich renderables (``manage.py experiment_report`` and the closed-loop demo print it)."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .composition import CONTROL_TOP


def _fmt(value: float, kind: str, metric: str) -> str:
    if kind == "mean":
        return f"{value:,.2f}"
    return f"{value * 100:.2f}%"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def _interval(lo: float | None, hi: float | None) -> str:
    return "n/a" if lo is None else f"[{lo * 100:+.1f}%, {hi * 100:+.1f}%]"


def _share(n: int, total: int) -> str:
    return f"{n:,} ({n / total * 100:.0f}%)" if total else f"{n:,}"


def serving_mix_table(mix: dict, arms: list[str]) -> Table:
    """Per arm: personalised rail renders by the source that answered them, and why any fell back."""
    by_arm = {a["arm"]: a for a in mix["arms"]}
    table = Table(title="What each arm served (personalised rails; trending left out)")
    table.add_column("served by")
    for arm in arms:
        table.add_column(arm, justify="right")
    rows = [
        ("rail renders", lambda a: f"{a['requests']:,}"),
        ("live re-rank", lambda a: _share(a["by_source"].get("live", 0), a["requests"])),
        ("batch list", lambda a: _share(a["by_source"].get("batch", 0), a["requests"])),
        ("popular list (the arm's ranking)", lambda a: _share(a["by_source"].get("popularity", 0), a["requests"])),
        ("fallback: no history yet", lambda a: _share(a["no_history"], a["requests"])),
        ("fallback: fault", lambda a: _share(a["faults"], a["requests"])),
    ]
    for label, cell in rows:
        table.add_row(label, *[cell(by_arm[arm]) if arm in by_arm else "-" for arm in arms])
    reasons = sorted({r for a in mix["arms"] for r in a["fallback_reasons"] if r != "no_activity"})
    for reason in reasons:
        table.add_row(
            f"  {reason}",
            *[_share(by_arm[arm]["fallback_reasons"].get(reason, 0), by_arm[arm]["requests"]) if arm in by_arm else "-"
              for arm in arms],
        )  # fmt: skip
    return table


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def composition_table(rows: list, control: str | None) -> Table:
    """``rows``: :class:`shop.experiments.composition.ArmComposition` per arm."""
    table = Table(title="What the personalised rails showed (cards in the experiment's window)")
    table.add_column("cards")
    for r in rows:
        table.add_column(r.arm + (" (control)" if r.arm == control else ""), justify="right")
    lines = [
        ("cards shown", lambda r: f"{r.cards:,}"),
        ("distinct products", lambda r: f"{r.products:,}"),
        ("the visitor's own (viewed, clicked or carted before)", lambda r: _rate(r.own_share)),
        ("  click rate on those", lambda r: f"{_rate(r.own_ctr)} ({r.own_clicks:,}/{r.own_cards:,})"),
        ("click rate on the others", lambda r: f"{_rate(r.other_ctr)} ({r.other_clicks:,}/{r.other_cards:,})"),
        (
            f"  of the others, among the control's {CONTROL_TOP} most shown",
            lambda r: "-" if r.arm == control else _rate(r.other_control_share),
        ),
    ]
    for label, cell in lines:
        table.add_row(label, *[cell(r) for r in rows])
    return table


def results_renderable(data: dict) -> Group:
    """``data`` is ``presenters.results_as_dict`` output."""
    exp = data["experiment"]
    control = exp["control"]
    arms = [a["key"] for a in exp["arms"]]
    head = Text.assemble(
        (f"{exp['key']}", "bold"),
        f"  {exp['name']}  ({exp['status']}, since {exp['started_at']:%Y-%m-%d %H:%M} UTC)"
        if exp["started_at"]
        else f"  {exp['name']} ({exp['status']})",
    )

    table = Table(title="Per arm (control first); lift against " + str(control), show_lines=False)
    table.add_column("metric")
    for arm in arms:
        table.add_column(arm + (" (control)" if arm == control else ""), justify="right")
    table.add_row("visitors", *[f"{a['visitors']:,}" for a in exp["arms"]])
    few = None  # a comparison under the minimum sample: its figures are shown, marked, and not judged
    for m in data["metrics"]:
        by_arm = {v["arm"]: v for v in m["arms"]}
        comps = {c["arm"]: c for c in m["comparisons"]}
        cells = []
        for arm in arms:
            v = by_arm[arm]
            counts = (
                f" ({v['numerator']:,.0f}/{v['denominator']:,.0f})"
                if m["kind"] != "mean"
                else f" (n={v['visitors']:,})"
            )
            cells.append(_fmt(v["value"], m["kind"], m["metric"]) + counts)
        table.add_row(Text(m["label"] + (" *" if m["primary"] else ""), style="bold" if m["primary"] else ""), *cells)
        lift_cells, ci_cells, seq_cells, p_cells = [], [], [], []
        for arm in arms:
            c = comps.get(arm)
            if c is None:
                lift_cells.append("-")
                ci_cells.append("-")
                seq_cells.append("-")
                p_cells.append("-")
                continue
            style = "green" if c["conclusive"] and c["lift"] > 0 else "red" if c["conclusive"] else ""
            lift_cells.append(Text(_pct(c["lift"]), style=style))
            ci_cells.append(_interval(c["ci_low"], c["ci_high"]))
            seq_cells.append(_interval(c["seq_ci_low"], c["seq_ci_high"]))
            mark = ""
            if c.get("enough_data") is False:
                few, mark = few or c, " †"
            p_cells.append(("n/a" if c["p_value"] is None else f"{c['p_value']:.3f}") + mark)
        table.add_row("  lift", *lift_cells)
        table.add_row("  95% CI", *ci_cells)
        table.add_row("  always-valid CI", *seq_cells)
        table.add_row("  p-value", *p_cells, end_section=True)

    srm = data["srm"]
    srm_text = Text(srm["verdict"], style="bold red" if srm["mismatch"] else "green")
    conv = next(m for m in data["metrics"] if m["primary"])
    lines = [Text("- " + c["verdict"]) for c in conv["comparisons"]]
    mix = data.get("serving_mix")
    parts = [head, table]
    if mix is not None:
        parts.append(serving_mix_table(mix, arms))
        lines += [Text("- " + w, style="bold yellow") for w in mix["warnings"]]
    lines += [Text("- " + m["note"]) for m in data["metrics"] if m.get("note")]
    if few is not None:
        lines.append(
            Text(
                f"- † Too few to judge: under the minimum sample a verdict needs ({few['min_visitors']:,} visitors "
                f"and {few['min_nonzero']:,} with a non-zero value in each arm), whatever the interval or p-value says."
            )
        )
    if exp["crossovers"]:
        lines.append(Text(f"- {exp['crossovers']} visitors were seen under more than one arm and are left out."))
    return Group(*parts, Text.assemble(("SRM: ", "bold"), srm_text), Panel(Group(*lines), title="Verdict"))
