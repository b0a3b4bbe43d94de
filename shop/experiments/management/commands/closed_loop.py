"""``manage.py closed_loop``: the demo's loop against a running storefront.

1. wait until the site answers;
2. a first round of simulated shoppers browses it (no model yet: rails fall back to simpler rankings);
3. retrain the DLRM on what they did and batch-score (in the worker, or here with --inline); while the
   gate refuses every model and ``--warmup-rounds`` allows, the same shoppers come back for another
   round and the DLRM is retrained on everything so far (more data, never a weaker gate);
4. start a fresh experiment (a new salt) so the measurement covers only the round with a model;
5. the same shoppers come back with their browsers' cookies, and new ones arrive; with ``--visitors N``
   more new shoppers keep arriving, a cohort of ``--shoppers`` at a time, until N visitors have been
   exposed to the experiment (or ``--max-minutes`` have passed);
6. print the lift table of that experiment, what each arm actually served (live re-rank, batch list, or
   the popular list and why), and the smallest conversion lift that sample can detect.

Power: conversion near 25% and three equal arms need about 1,500 visitors per arm (4,500 in all) for
the lift test to detect a +20% conversion lift with 80% power at alpha 0.05 (``stats.visitors_for_lift``);
the demo's single round 2 (about 170 per arm) detects only lifts near +80%. ``make experiment`` runs the
longer loop.

The shoppers only ever speak HTTP to the site (shop.simulator); this command is the operator who
retrains the model and starts the experiment between the rounds.
"""

from __future__ import annotations

import logging
import time

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.rule import Rule

from recommender.metrics import BEST_SELLERS
from shop.experiments.analysis import proportion_head_to_head
from shop.experiments.composition import experiment_composition
from shop.experiments.models import Experiment
from shop.experiments.presenters import results_as_dict
from shop.experiments.report import composition_table, results_renderable
from shop.experiments.selectors import experiment_exposed_count, experiment_results, running_experiment_forget
from shop.experiments.services import DEFAULT_ARMS, experiment_create, experiment_start
from shop.experiments.serving_mix import experiment_serving_mix
from shop.experiments.stats import minimum_detectable_lift, visitors_for_lift
from shop.recs import execution, runs, selectors
from shop.recs.engine import QUALITY_K, training_note
from shop.recs.models import ModelVersion, TaskRun
from shop.simulator.run import Config, session_count, simulate

_DONE = ("succeeded", "failed")


class Command(BaseCommand):
    help = "Simulate shoppers, retrain and batch-score, start a fresh experiment, simulate again, print the lifts."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--shoppers", type=int, default=300, help="Shoppers per round.")
        parser.add_argument("--minutes", type=float, default=2.0, help="Each round's sessions start over this long.")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--concurrency", type=int, default=8)
        parser.add_argument("--think", type=float, default=0.2, help="Mean seconds between a shopper's pages.")
        parser.add_argument("--inline", action="store_true", help="Retrain and batch-score here (no worker).")
        parser.add_argument("--ready-timeout", type=float, default=180.0, help="Seconds to wait for the site.")
        parser.add_argument("--task-timeout", type=float, default=1800.0, help="Seconds to wait for training/scoring.")
        parser.add_argument(
            "--visitors",
            type=int,
            default=0,
            help="Keep new shoppers arriving in round 2 until this many visitors were exposed to the experiment "
            "(0: one cohort of returning and one of new shoppers, the demo's size).",
        )
        parser.add_argument(
            "--warmup-rounds",
            type=int,
            default=1,
            help="While the gate refuses every model, up to this many rounds of the same shoppers before round 2 "
            "(each followed by a retrain on everything so far).",
        )
        parser.add_argument(
            "--max-minutes", type=float, default=0.0, help="Stop adding cohorts after this long in round 2 (0: never)."
        )

    def handle(self, *args, **o):
        if o["shoppers"] < 1 or o["warmup_rounds"] < 1 or o["visitors"] < 0 or o["max_minutes"] < 0:
            raise CommandError("--shoppers and --warmup-rounds must be >= 1; --visitors and --max-minutes >= 0.")
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.console = Console(file=self.stdout, width=150, soft_wrap=True)
        self._wait_ready(o["url"], o["ready_timeout"])
        state: dict[int, dict] = {}
        base = {"url": o["url"], "minutes": o["minutes"], "concurrency": o["concurrency"], "think_s": o["think"]}

        self.console.print(Rule("Round 1: shoppers browse the shop before any model is trained"))
        self._simulate(Config(shoppers=o["shoppers"], seed=o["seed"], round=0, **base), state)

        self.console.print(Rule("Retrain the DLRM on their interactions, then batch-score"))
        version = self._retrain_and_score(inline=o["inline"], timeout=o["task_timeout"])
        warmup = 1
        while not self._serving_model() and warmup < o["warmup_rounds"]:
            # the gate refused the model and none serves: more of the same shoppers' traffic, then train again
            warmup += 1
            self.console.print(Rule(f"Warm-up round {warmup}: no model serves yet; the same shoppers come back"))
            self._simulate(Config(shoppers=o["shoppers"], seed=o["seed"], round=warmup - 1, **base), state)
            self.console.print(Rule("Retrain the DLRM on everything so far, then batch-score"))
            version = self._retrain_and_score(inline=o["inline"], timeout=o["task_timeout"])

        control_rate = self._control_conversion()
        experiment = self._fresh_experiment()
        active = self._serving_model()
        self.console.print(
            f"Started experiment [bold]{experiment.key}[/bold] (new salt); this retrain: {version or 'not promoted'}; "
            f"serving model: {active or 'none (rails fall back)'}"
        )
        self._print_plan(experiment=experiment, target=o["visitors"], control_rate=control_rate)
        time.sleep(settings.EXPERIMENTS_CACHE_TTL_S + 1)  # web processes drop their cached experiment by then
        self.console.print(Rule("Round 2: the same shoppers return with their cookies, and as many new ones arrive"))
        round2 = time.monotonic()
        # returning shoppers (their history is in the model) and newcomers (no history) in one round
        self._simulate(Config(shoppers=o["shoppers"], seed=o["seed"], round=warmup, **base), state)
        cohort = 1
        while True:
            self._simulate(Config(shoppers=o["shoppers"], seed=o["seed"] + 1000 * cohort, round=warmup, **base), {})
            exposed = experiment_exposed_count(experiment=experiment)
            if not o["visitors"] or exposed >= o["visitors"]:
                break
            minutes = (time.monotonic() - round2) / 60
            if o["max_minutes"] and minutes >= o["max_minutes"]:
                self.console.print(
                    f"[yellow]Stopping at {exposed:,} of {o['visitors']:,} visitors: --max-minutes "
                    f"{o['max_minutes']:g} reached ({minutes:.1f} min).[/yellow]"
                )
                break
            self.console.print(f"  {exposed:,} of {o['visitors']:,} visitors exposed; another cohort of new shoppers")
            cohort += 1

        # every web process writes its serving counters every RECS_STATS_FLUSH_S: wait for the last ones
        time.sleep(settings.RECS_STATS_FLUSH_S + min(settings.RECS_SERVING_POLL_S, settings.RECS_STATS_FLUSH_S) + 2)
        self.console.print(Rule(f"Lift table: {experiment.key}"))
        experiment.refresh_from_db()
        results = experiment_results(experiment=experiment)
        data = results_as_dict(
            experiment=experiment, results=results, serving_mix=experiment_serving_mix(experiment=experiment)
        )
        self.console.print(results_renderable(data), soft_wrap=False)  # wrap the verdicts, never crop them
        self.console.print(composition_table(experiment_composition(experiment=experiment), results.control))
        self._print_power(results)

    def _serving_model(self) -> str | None:
        return ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()

    # --- power ----------------------------------------------------------------------------------------
    def _control_conversion(self) -> float | None:
        """Conversion of the control arm of the experiment that ran during round 1 (None when unknown)."""
        running = Experiment.objects.filter(status=Experiment.Status.RUNNING).first()
        if running is None:
            return None
        results = experiment_results(experiment=running)
        conv = next(m for m in results.metrics if m.metric.primary)
        control = next((v for v in conv.arms if v.arm == results.control), None)
        return control.value if control is not None and 0 < control.value < 1 else None

    def _print_plan(self, *, experiment: Experiment, target: int, control_rate: float | None) -> None:
        arms = experiment.arms.count()
        if control_rate is None:
            return
        need = visitors_for_lift(control_rate=control_rate, lift=0.2)
        line = (
            f"Power: at round 1's control conversion of {control_rate:.1%}, detecting a +20% conversion lift "
            f"(80% power, alpha 0.05) takes about {need:,} visitors per arm ({need * arms:,} in {arms} arms)"
        )
        if target:
            mde = minimum_detectable_lift(control_rate=control_rate, visitors_per_arm=target // arms)
            line += f"; this run aims at {target:,} ({target // arms:,} per arm): smallest detectable lift {mde:+.1%}"
        self.console.print(line + ".")

    def _print_power(self, results) -> None:
        for metric, label in (("conversion", "conversion"), ("rail_conversion", "conversion through a rail")):
            head = proportion_head_to_head(results=results, metric=metric, baseline="heuristic", arm="dlrm")
            if head is not None and head.lift is not None and head.ci_low is not None:
                # with the interval that holds at any look, as the lift table gives it (set with the 95% one)
                line = (
                    f"dlrm against heuristic, {label}: {head.arm_value:.2%} vs {head.control_value:.2%}, lift "
                    f"{head.lift:+.1%} (95% CI {head.ci_low:+.1%} to {head.ci_high:+.1%}, p = {head.p_value:.3f}; "
                    f"always-valid {head.seq_ci_low:+.1%} to {head.seq_ci_high:+.1%})."
                )
                if not head.enough_data:  # as the lift table's verdicts: no judgement below the minimum sample
                    line += (
                        f" Too few to judge: {head.control_nonzero:,} and {head.arm_nonzero:,} visitors with a {label};"
                        f" a verdict needs {head.min_nonzero:,} in each arm (and {head.min_visitors:,} visitors)."
                    )
                elif head.significant and not head.sequentially_significant:
                    line += " Significant at this single look only: the always-valid interval does not confirm it."
                self.console.print(line)
        conv = next(m for m in results.metrics if m.metric.primary)
        control = next((v for v in conv.arms if v.arm == results.control), None)
        if control is None or not 0 < control.value < 1:
            return
        for comp in conv.comparisons:
            n = min(comp.comparison.control_n, comp.comparison.arm_n)
            mde = minimum_detectable_lift(control_rate=control.value, visitors_per_arm=n)
            if mde is not None:
                self.console.print(
                    f"Smallest conversion lift of {comp.arm} over {results.control} this sample detects "
                    f"(80% power, alpha 0.05): {mde:+.1%} ({n:,} visitors in the smaller arm, control {control.value:.1%})."
                )

    # --- steps ---------------------------------------------------------------------------------------
    def _wait_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url.rstrip("/") + "/", timeout=5.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise CommandError(f"{url} did not answer within {timeout:.0f} s")
            time.sleep(1.0)

    def _simulate(self, config: Config, state: dict[int, dict]) -> None:
        with Progress(
            TextColumn("[bold]shopping"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("sessions"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        ) as progress:
            task = progress.add_task("sessions", total=session_count(config))
            summary = simulate(config, browser_state=state, on_session_done=lambda: progress.advance(task))
        c = summary.counters
        self.console.print(
            f"{summary.shoppers} shoppers, {summary.sessions} sessions, {c.pages} pages, {c.events_sent} beacon events, "
            f"{c.clicks} clicks, {c.add_to_carts} add-to-carts, {c.orders} orders, ${c.revenue:,.2f} revenue, "
            f"{c.signups} sign-ups, {c.logins} log-ins, {c.throttled} throttled, {c.http_errors} server errors "
            f"in {summary.seconds:.0f} s"
        )
        for err in c.errors[:5]:
            self.console.print(f"[red]error:[/red] {err}")

    def _wait_run(self, run_id, timeout: float) -> TaskRun:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            run = selectors.task_run_get(run_id=run_id)
            line = f"  {run.kind} {run.state} {run.percent:5.1f}% {run.stage}"
            if line != last:
                self.console.print(line)
                last = line
            if run.state in _DONE:
                return run
            if time.monotonic() > deadline:
                raise CommandError(f"{run.kind} {run_id} did not finish within {timeout:.0f} s")
            time.sleep(1.0)

    def _start(self, kind: str, inline: bool) -> TaskRun:
        try:
            run = runs.task_run_start(kind=kind, trigger="closed loop", enqueue=not inline)
        except runs.AlreadyRunning as exc:
            if exc.run is None:
                raise CommandError(f"a {kind} run is active and could not be read") from exc
            return exc.run  # one is queued or running already: wait for it
        if inline:
            execution.task_run_execute(run_id=run.id)
        return run

    def _print_version_quality(self, version: str | None) -> None:
        """How the version was trained (exposure weighting, updates kept) and how far it leans on the best sellers,
        beside stage 1's order (its training holdout)."""
        metrics = ModelVersion.objects.filter(version=version).values_list("metrics", flat=True).first() or {}
        stage1 = (metrics.get("baselines") or {}).get("retrieval_only") or {}
        mine, theirs = metrics.get(f"best_sellers@{QUALITY_K}"), stage1.get(f"best_sellers@{QUALITY_K}")
        weighting, note = metrics.get("exposure_weighting"), training_note(metrics)
        if weighting:
            self.console.print(
                f"    exposure weighting {weighting['power']}: {weighting['positives']} training positives weigh "
                f"{weighting['weight_min']}-{weighting['weight_max']} ({weighting['capped']} at the cap)"
            )
        if note:
            self.console.print(f"    {note}")
        if mine is None or theirs is None:
            return
        self.console.print(
            f"    best sellers: {mine:.0%} of its top-{QUALITY_K} places hold the shop's {BEST_SELLERS} best sellers "
            f"(stage 1's order {theirs:.0%}); {metrics.get(f'distinct@{QUALITY_K}')} distinct products against "
            f"{stage1.get(f'distinct@{QUALITY_K}')}, over {metrics.get('users')} holdout users"
        )

    def _retrain_and_score(self, *, inline: bool, timeout: float) -> str | None:
        run = self._wait_run(self._start(TaskRun.Kind.RETRAIN, inline).id, timeout)
        if run.state != "succeeded":
            raise CommandError(f"retrain failed: {run.error}")
        result = run.result or {}
        self.console.print(
            f"  version {result.get('version')}: promoted={result.get('promoted')}, "
            f"{result.get('examples')} examples, {result.get('training_seconds')} s"
        )
        for reason in result.get("reasons") or []:  # the gate's own words: why it was (not) promoted
            self.console.print(f"    gate: {reason}")
        self._print_version_quality(result.get("version"))
        batch_id = result.get("batch_score_run")
        if batch_id:
            if inline:
                execution.task_run_execute(run_id=batch_id)  # skipped if a worker took it already
            batch = self._wait_run(batch_id, timeout)
            if batch.state != "succeeded":
                raise CommandError(f"batch scoring failed: {batch.error}")
        return result.get("version") if result.get("promoted") else None

    def _fresh_experiment(self) -> Experiment:
        running = Experiment.objects.filter(status=Experiment.Status.RUNNING).prefetch_related("arms").first()
        arms = [(a.key, a.weight, a.is_control) for a in running.arms.all()] if running else list(DEFAULT_ARMS)
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        experiment = experiment_create(
            key=f"closed-loop-{stamp}",
            name="Rail ranking after the first retrain (closed-loop demo)",
            arms=arms,
            description="Started by manage.py closed_loop once a DLRM was trained on the first round of shoppers.",
        )
        experiment = experiment_start(experiment=experiment)
        running_experiment_forget()
        return experiment
