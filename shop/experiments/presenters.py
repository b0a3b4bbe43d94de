"""Results as plain dicts (the API's JSON and the report command share this shape)."""

from __future__ import annotations

import dataclasses

from django.utils import timezone

from .analysis import Results
from .models import Experiment
from .serving_mix import ServingMix


def _srm_verdict(results: Results) -> str:
    s = results.srm_result
    if s.mismatch:
        return f"Sample-ratio mismatch (p = {s.p_value:.2g} < {s.threshold}): check assignment and logging first."
    return f"Visitors split as configured (p = {s.p_value:.2g})."


def serving_mix_as_dict(mix: ServingMix | None) -> dict | None:
    if mix is None:
        return None
    return {
        "arms": [
            {
                "arm": a.arm,
                "requests": a.requests,
                "intended": a.intended,
                "by_source": a.by_source,
                "fallback_reasons": a.fallback_reasons,
                "own": a.own,
                "own_share": a.own_share,
                "no_history": a.no_history,
                "faults": a.faults,
                "fault_share": a.fault_share,
                "note": a.note,
            }
            for a in mix.arms
        ],
        "warnings": mix.warnings,
    }


def results_as_dict(*, experiment: Experiment, results: Results, serving_mix: ServingMix | None = None) -> dict:
    """``serving_mix``: what each arm served in the window (``serving_mix.experiment_serving_mix``); None
    leaves it out of the verdict."""
    s = results.srm_result
    return {
        "experiment": {
            "key": experiment.key,
            "name": experiment.name,
            "status": experiment.status,
            "started_at": experiment.started_at,
            "stopped_at": experiment.stopped_at,
            "control": results.control,
            "arms": [
                {"key": a.key, "weight": a.weight, "is_control": a.is_control, "visitors": results.visitors[a.key]}
                for a in results.experiment.arms
            ],
            "crossovers": results.crossovers,
        },
        "srm": {
            "p_value": s.p_value,
            "chi2": s.chi2,
            "threshold": s.threshold,
            "mismatch": s.mismatch,
            "observed": s.observed,
            "expected": s.expected,
            "verdict": _srm_verdict(results),
        },
        "metrics": [
            {
                "metric": m.metric.key,
                "label": m.metric.label,
                "kind": m.metric.kind,
                "primary": m.metric.primary,
                "cap": None if m.cap is None else dataclasses.asdict(m.cap),
                "note": m.cap.note(m.metric.label) if m.cap is not None and m.cap.visitors_capped else m.metric.note,
                "arms": [dataclasses.asdict(v) for v in m.arms],
                "comparisons": [
                    {
                        "arm": c.arm,
                        **dataclasses.asdict(c.comparison),
                        "significant": c.comparison.significant,
                        "sequentially_significant": c.comparison.sequentially_significant,
                        "enough_data": c.comparison.enough_data,
                        "conclusive": c.comparison.conclusive,
                        "more_visitors_for_minimum": c.comparison.more_visitors_for_minimum,
                        "more_visitors_per_arm": c.comparison.more_visitors_per_arm,
                        "verdict": c.verdict,
                    }
                    for c in m.comparisons
                ],
            }
            for m in results.metrics
        ],
        # what an arm served qualifies what its lift means: said beside the verdict, not in a footnote
        "verdict": " ".join([results.verdict, *(serving_mix.warnings if serving_mix else [])]),
        "serving_mix": serving_mix_as_dict(serving_mix),
        "by_day": [dataclasses.asdict(d) for d in results.by_day],
        "by_model_version": [dataclasses.asdict(v) for v in results.by_model_version],
        "generated_at": timezone.now(),
    }
