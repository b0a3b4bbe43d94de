"""Print an experiment's lift table: arms side by side, CIs, the SRM verdict."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder
from rich.console import Console

from shop.experiments.composition import experiment_composition
from shop.experiments.presenters import results_as_dict
from shop.experiments.report import composition_table, results_renderable
from shop.experiments.selectors import experiment_current_get, experiment_get, experiment_results
from shop.experiments.serving_mix import experiment_serving_mix


class Command(BaseCommand):
    help = "Print the lift table of the running experiment (or --key), or its JSON with --json."

    def add_arguments(self, parser):
        parser.add_argument("--key", help="Experiment key (default: the running one, else the last stopped).")
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="Print the API's JSON instead of the table."
        )
        parser.add_argument("--width", type=int, default=None, help="Console width (default: the terminal's).")
        parser.add_argument(
            "--composition",
            action="store_true",
            help="Also print what each arm's rails showed: the visitor's own products, click rates, distinct "
            "products, the control's products (reads every card of the window: a report, not a dashboard).",
        )

    def handle(self, *args, key=None, as_json=False, width=None, composition=False, **options):
        experiment = experiment_get(key=key) if key else experiment_current_get()
        if experiment is None:
            raise CommandError(f"No experiment {key!r}." if key else "No experiment has run yet.")
        data = results_as_dict(
            experiment=experiment,
            results=experiment_results(experiment=experiment),
            serving_mix=experiment_serving_mix(experiment=experiment),
        )
        if as_json:
            self.stdout.write(json.dumps(data, cls=DjangoJSONEncoder, indent=2))
            return
        console = Console(file=self.stdout, width=width or 160, force_terminal=False, soft_wrap=False)
        console.print(results_renderable(data))
        if composition:
            console.print(
                composition_table(experiment_composition(experiment=experiment), data["experiment"]["control"])
            )
