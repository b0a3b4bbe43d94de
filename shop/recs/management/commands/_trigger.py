"""Shared by ``retrain`` and ``batch_score``: start a run (or run it here), optionally wait and show progress."""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError

from shop.recs import execution, runs, selectors


class TriggerCommand(BaseCommand):
    kind = ""

    def add_arguments(self, parser):
        parser.add_argument("--wait", action="store_true", help="wait for the run to finish, showing its progress")
        parser.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this many seconds")
        parser.add_argument(
            "--inline",
            action="store_true",
            help="run the task in this process instead of queueing it (no worker needed)",
        )

    def handle(self, *args, wait: bool, timeout: float, inline: bool, **options):
        try:
            run = runs.task_run_start(kind=self.kind, trigger="manage.py", enqueue=not inline)
        except runs.AlreadyRunning as e:
            self.stdout.write(self.style.WARNING(f"already running: {self.kind} {e.run.id if e.run else ''}".strip()))
            if not wait or e.run is None:
                return
            run = e.run
        else:
            self.stdout.write(
                f"{self.kind} queued: task {run.id}" if not inline else f"{self.kind} running here: {run.id}"
            )
        if inline:
            try:
                execution.task_run_execute(run_id=run.id)
            except Exception as exc:
                raise CommandError(f"{self.kind} failed: {exc}") from exc
            wait = True
        if wait:
            self._wait(run.id, timeout)

    def _wait(self, run_id, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while True:
            run = selectors.task_run_get(run_id=run_id)
            line = f"{run.state:9} {run.percent:5.1f}%  {run.stage}"
            if line != last:
                self.stdout.write(line + (f"  [{run.device}]" if run.device else ""))
                sys.stdout.flush()
                last = line
            if run.state in ("succeeded", "failed"):
                break
            if time.monotonic() > deadline:
                raise CommandError(f"gave up waiting after {timeout:.0f}s; the run goes on ({run_id})")
            time.sleep(0.5)
        if run.state == "failed":
            raise CommandError(f"{self.kind} failed: {run.error}")
        shown = {k: v for k, v in run.result.items() if not isinstance(v, dict | list)}
        self.stdout.write(self.style.SUCCESS(f"{self.kind} done: {shown}"))
