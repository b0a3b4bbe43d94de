"""``manage.py closed_loop``: the demo's loop against a running storefront.

1. wait until the site answers;
2. a first round of simulated shoppers browses it (no model yet: rails fall back to simpler rankings);
3. retrain the DLRM on what they did and batch-score (in the worker, or here with --inline);
4. start a fresh experiment (a new salt) so the measurement covers only the round with a model;
5. the same shoppers come back with their browsers' cookies, and new ones arrive;
6. print the lift table of that experiment.

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
from rich.rule import Rule

from shop.experiments.models import Experiment
from shop.experiments.presenters import results_as_dict
from shop.experiments.report import results_renderable
from shop.experiments.selectors import experiment_results, running_experiment_forget
from shop.experiments.services import DEFAULT_ARMS, experiment_create, experiment_start
from shop.recs import execution, runs, selectors
from shop.recs.models import ModelVersion, TaskRun
from shop.simulator.run import Config, simulate

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

    def handle(self, *args, **o):
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.console = Console(file=self.stdout, width=150, soft_wrap=True)
        self._wait_ready(o["url"], o["ready_timeout"])
        state: dict[int, dict] = {}
        base = {"url": o["url"], "minutes": o["minutes"], "concurrency": o["concurrency"], "think_s": o["think"]}

        self.console.print(Rule("Round 1: shoppers browse the shop before any model is trained"))
        self._simulate(Config(shoppers=o["shoppers"], seed=o["seed"], round=0, **base), state)

        self.console.print(Rule("Retrain the DLRM on their interactions, then batch-score"))
        version = self._retrain_and_score(inline=o["inline"], timeout=o["task_timeout"])

        experiment = self._fresh_experiment()
        active = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
        self.console.print(
            f"Started experiment [bold]{experiment.key}[/bold] (new salt); this retrain: {version or 'not promoted'}; "
            f"serving model: {active or 'none (rails fall back)'}"
        )
        time.sleep(settings.EXPERIMENTS_CACHE_TTL_S + 1)  # web processes drop their cached experiment by then
        self.console.print(Rule("Round 2: the same shoppers return with their cookies, and as many new ones arrive"))
        # returning shoppers (their history is in the model) and newcomers (no history) in one round
        self._simulate(Config(shoppers=o["shoppers"], seed=o["seed"], round=1, **base), state)
        self._simulate(Config(shoppers=o["shoppers"], seed=o["seed"] + 1000, round=1, **base), {})

        self.console.print(Rule(f"Lift table: {experiment.key}"))
        experiment.refresh_from_db()
        data = results_as_dict(experiment=experiment, results=experiment_results(experiment=experiment))
        self.console.print(results_renderable(data), soft_wrap=False)  # wrap the verdicts, never crop them

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
        summary = simulate(config, browser_state=state)
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

    def _retrain_and_score(self, *, inline: bool, timeout: float) -> str | None:
        run = self._wait_run(self._start(TaskRun.Kind.RETRAIN, inline).id, timeout)
        if run.state != "succeeded":
            raise CommandError(f"retrain failed: {run.error}")
        result = run.result or {}
        self.console.print(
            f"  version {result.get('version')}: promoted={result.get('promoted')}, "
            f"{result.get('examples')} examples, {result.get('training_seconds')} s"
        )
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
