"""The benchmark's shapes, each run through Chordflow and through raw Celery, and the report table."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
from celery import chain, chord, group
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

import executions.benchmark.actions  # noqa: F401 (registers bench.sleep, which the definitions name)
from config.celery_app import app
from config.embedded_redis import die_with_parent
from executions import attempts, chunks
from executions.benchmark import report as reporting
from executions.benchmark.observability import shape_observability
from executions.benchmark.raw_tasks import done, noop, sleep, store
from executions.dispatch import SCHEDULE_TICK
from executions.models import Run, Schedule, StepRun
from executions.services import run_start
from executions.states import RUN_FINISHED, RunStatus
from workflows.services import workflow_save

BASE_DIR = Path(__file__).resolve().parent.parent.parent
POLL = 0.02
NOWHERE = "bench-nobody-reads-this"
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")
_slugs = itertools.count()


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark: {what} did not finish in {timeout:.0f}s")
        time.sleep(POLL)


def define(steps: list[dict], **top: Any):
    workflow, _version, _created = workflow_save(
        slug=f"bench-{next(_slugs)}-{uuid.uuid4().hex[:6]}", definition={"name": "bench", "steps": steps, **top}
    )
    return workflow


def chain_definition(length: int) -> list[dict]:
    return [{"id": f"s{i}", "action": "echo", **({"depends_on": [f"s{i - 1}"]} if i else {})} for i in range(length)]


FAN_OUT = [
    {"id": "fan", "action": "echo", "for_each": "{{ input.items }}", "params": {"i": "{{ item }}"}},
    {"id": "join", "action": "echo", "depends_on": ["fan"], "params": {"n": "{{ steps.fan.output | length }}"}},
]
FAN_OUT_IO = [
    {"id": "fan", "action": "bench.sleep", "for_each": "{{ input.items }}", "params": {"seconds": "{{ input.sleep }}"}},
    {"id": "join", "action": "echo", "depends_on": ["fan"], "params": {"n": "{{ steps.fan.output | length }}"}},
]
DIAMOND = [
    {"id": "a", "action": "echo"},
    {"id": "b", "action": "echo", "depends_on": ["a"]},
    {"id": "c", "action": "echo", "depends_on": ["a"]},
    {"id": "d", "action": "echo", "depends_on": ["b", "c"]},
]


class Bench:
    def __init__(self, *, quick: bool, concurrency: int, var_dir: Path, profile: bool = False) -> None:
        self.quick = quick
        self.concurrency = concurrency
        self.var_dir = var_dir
        self.profile = profile
        self.chain_length = 20 if quick else 200
        self.widths = [50, 200] if quick else [100, 1000, 10_000, 100_000]
        self.io_width = 100 if quick else 1000
        self.diamonds = 50 if quick else 500
        self.schedules = 200 if quick else 10_000
        self.repeats = 1 if quick else 3
        self.worker: subprocess.Popen | None = None
        self.profiler: subprocess.Popen | None = None

    # --- the stack --------------------------------------------------------------------------------
    @contextmanager
    def stack(self) -> Iterator[None]:
        call_command("migrate", interactive=False, verbosity=0)
        argv = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork", "-c", str(self.concurrency),
            "-Q", "default", "-n", "bench@%h", "-l", "WARNING", "--without-mingle", "--without-gossip",
            "-I", "executions.benchmark.raw_tasks,executions.benchmark.actions",
        ]  # fmt: skip
        log = open(self.var_dir / "worker.log", "wb")  # closed when the stack stops
        self.worker = subprocess.Popen(
            argv, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT, process_group=0, preexec_fn=die_with_parent
        )
        try:
            wait_until(lambda: bool(app.control.ping(timeout=0.5)), 60, "the worker's start")
            if self.profile:
                self.start_profiler()
            yield
        finally:
            if self.profiler is not None:
                self.profiler.send_signal(signal.SIGINT)
                self.profiler.wait(timeout=60)
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
            log.close()

    def start_profiler(self) -> None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        output = self.var_dir / "worker-profile.svg"
        self.profiler = subprocess.Popen(
            [py_spy, "record", "--pid", str(self.worker.pid), "--subprocesses", "--rate", "200", "-o", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        print(f"profiling the worker into {output}", flush=True)

    def worker_rss(self) -> int:
        try:
            family = [psutil.Process(self.worker.pid), *psutil.Process(self.worker.pid).children(recursive=True)]
            return sum(p.memory_info().rss for p in family if p.is_running())
        except psutil.NoSuchProcess:
            return 0

    # --- running one shape ------------------------------------------------------------------------
    def run_chordflow(self, workflow, run_input: dict | None = None, timeout: float = 900) -> tuple[float, Run]:
        started = time.time()
        run, _ = run_start(workflow=workflow, input=run_input or {})
        wait_until(lambda: Run.objects.filter(pk=run.pk, status__in=RUN_FINISHED).exists(), timeout, "a run")
        run.refresh_from_db()
        if run.status != RunStatus.SUCCEEDED:
            raise RuntimeError(f"benchmark run {run.pk} ended {run.status}: {run.error}")
        return started, run

    def run_raw(self, signature, key: str, expected: int | None = None, timeout: float = 900) -> tuple[float, float]:
        """(sent, finished): finished is when the `done` task ran, or when the last of `expected` noops ran."""
        started = time.time()
        signature.apply_async()
        if expected is None:
            wait_until(lambda: store().exists(f"bench:{key}:done"), timeout, "a raw Celery shape")
            return started, float(store().get(f"bench:{key}:done"))
        wait_until(lambda: store().llen(f"bench:{key}") >= expected, timeout, "a raw Celery chain")
        return started, max(float(t) for t in store().lrange(f"bench:{key}", 0, -1))

    # --- the shapes -------------------------------------------------------------------------------
    def warm_up(self) -> None:
        self.run_chordflow(define(chain_definition(5)))
        self.run_chordflow(define(FAN_OUT), {"items": list(range(20))})
        key = uuid.uuid4().hex
        self.run_raw(chord(group(noop.si(key) for _ in range(20)), done.si(key=key)), key)

    def shape_chain(self) -> dict:
        n = self.chain_length
        ours, raw, latencies, limited = [], [], [], []
        for _ in range(self.repeats):
            started, run = self.run_chordflow(define(chain_definition(n)))
            ours.append((run.finished_at.timestamp() - started) / n * 1000)
            # the same chain under a concurrency limit it never reaches: the price of the bucket's lock
            started, capped = self.run_chordflow(define(chain_definition(n), concurrency={"limit": 1000}))
            limited.append((capped.finished_at.timestamp() - started) / n * 1000)
            key = uuid.uuid4().hex
            sent, finished = self.run_raw(chain(*(noop.si(key) for _ in range(n))), key, expected=n)
            raw.append((finished - sent) / n * 1000)
        # Dispatch latency: a chain's later steps run in the task before them (no message, no wait), so
        # it is measured on steps that do get a message: one-step runs, one after another.
        single = define(chain_definition(1))
        for _ in range(50 if self.quick else 200):
            _started, run = self.run_chordflow(single)
            step = StepRun.objects.get(run=run)
            latencies.append((step.started_at - step.queued_at).total_seconds() * 1000)
        return {
            "length": n,
            "chordflow_ms_per_step": median(ours),
            "celery_ms_per_step": median(raw),
            "limited_ms_per_step": median(limited),
            "dispatch_p50_ms": percentile(latencies, 50),
            "dispatch_p99_ms": percentile(latencies, 99),
        }

    def shape_fan_out(self, width: int, repeats: int, *, sleep_s: float = 0.0, raw_side: bool = True) -> dict:
        """A for_each of `width` branches and a join, against a raw chord of as many tasks: no-ops, or
        tasks that sleep `sleep_s` (I/O-bound). The widest runs without its raw side: the target there
        is our own linearity, and a group of 100,000 signatures measures the client, not the chord."""
        ours, raw, peak = [], [], 0
        definition, run_input = (FAN_OUT_IO, {"sleep": sleep_s}) if sleep_s else (FAN_OUT, {})
        for _ in range(repeats):
            sampler = RssSampler(self.worker_rss)
            with sampler:
                started, run = self.run_chordflow(define(definition), {"items": list(range(width)), **run_input})
            peak = max(peak, sampler.peak)
            recorded = StepRun.objects.filter(run=run, step_id="fan", branch_index__isnull=False, status="succeeded")
            if recorded.count() != width:
                raise RuntimeError(f"benchmark: the fan-out of {width} recorded {recorded.count()} branches")
            join = StepRun.objects.get(run=run, step_id="join")
            ours.append(join.finished_at.timestamp() - started)
            if raw_side:
                key = uuid.uuid4().hex
                tasks = (sleep.si(key, sleep_s) if sleep_s else noop.si(key) for _ in range(width))
                sent, finished = self.run_raw(chord(group(tasks), done.si(key=key)), key)
                raw.append(finished - sent)
        ours_s, raw_s = median(ours), (median(raw) if raw else None)
        shape = {
            "width": width,
            "chordflow_seconds": ours_s,
            "celery_seconds": raw_s,
            "chordflow_branches_per_second": width / ours_s,
            "celery_branches_per_second": width / raw_s if raw_s else None,
            "chordflow_ms_per_branch": ours_s / width * 1000,
            "celery_ms_per_branch": raw_s / width * 1000 if raw_s else None,
            "worker_peak_rss_mb": peak / 2**20,
        }
        if sleep_s:
            shape["sleep_ms"] = sleep_s * 1000
        return shape

    def shape_diamonds(self) -> dict:
        count = self.diamonds
        workflow = define(DIAMOND)
        started = time.time()
        runs = [run_start(workflow=workflow)[0].pk for _ in range(count)]
        start_s = time.time() - started  # the client's run_start calls, while the workers already run
        wait_until(
            lambda: Run.objects.filter(pk__in=runs, status__in=RUN_FINISHED).count() == count, 900, "the diamonds"
        )
        finished = list(Run.objects.filter(pk__in=runs).values_list("created_at", "finished_at", "status"))
        if any(status != RunStatus.SUCCEEDED for *_, status in finished):
            raise RuntimeError("benchmark: a diamond run did not succeed")
        durations = [(end - start).total_seconds() * 1000 for start, end, _ in finished]
        ours_rate = count / (max(end for _, end, _ in finished).timestamp() - started)
        latencies = [  # of the steps that got a message (a continued step starts as it is queued)
            (s - q).total_seconds() * 1000
            for q, s in StepRun.objects.filter(run_id__in=runs).values_list("queued_at", "started_at")
            if s != q
        ]

        keys = [uuid.uuid4().hex for _ in range(count)]
        sent: dict[str, float] = {}
        raw_started = time.time()
        for key in keys:
            sent[key] = time.time()
            chain(noop.si(key), chord([noop.si(key), noop.si(key)], done.si(key=key))).apply_async()
        wait_until(lambda: all(store().exists(f"bench:{k}:done") for k in keys), 900, "the raw diamonds")
        ends = {k: float(store().get(f"bench:{k}:done")) for k in keys}
        raw_durations = [(ends[k] - sent[k]) * 1000 for k in keys]
        raw_rate = count / (max(ends.values()) - raw_started)

        latency_key = uuid.uuid4().hex
        for _ in range(count * 4):
            noop.delay(latency_key, sent=time.time())
        wait_until(lambda: store().llen(f"bench:{latency_key}:latency") >= count * 4, 900, "the raw latency probe")
        raw_latencies = [float(x) * 1000 for x in store().lrange(f"bench:{latency_key}:latency", 0, -1)]
        return {
            "runs": count,
            "chordflow_runs_per_second": ours_rate,
            "chordflow_start_seconds": start_s,
            "celery_runs_per_second": raw_rate,
            "chordflow_p50_ms": percentile(durations, 50),
            "chordflow_p99_ms": percentile(durations, 99),
            "celery_p50_ms": percentile(raw_durations, 50),
            "celery_p99_ms": percentile(raw_durations, 99),
            "dispatch": {
                "chordflow_p50_ms": percentile(latencies, 50),
                "chordflow_p99_ms": percentile(latencies, 99),
                "celery_p50_ms": percentile(raw_latencies, 50),
                "celery_p99_ms": percentile(raw_latencies, 99),
            },
        }

    def shape_schedules(self) -> dict:
        """N schedules due at one nominal time; the tick is sent every second, as beat sends it, and runs
        on the worker. Lateness is each run's created_at minus the nominal time."""
        workflow = define([{"id": "a", "action": "echo"}], defaults={"queue": NOWHERE})
        nominal = (timezone.now() + timedelta(seconds=3)).replace(microsecond=0)
        Schedule.objects.bulk_create(
            [
                Schedule(workflow=workflow, name=f"s{i}", cron="* * * * *", next_fire_at=nominal, next_due_at=nominal)
                for i in range(self.schedules)
            ],
            batch_size=1000,
        )
        runs = Run.objects.filter(workflow=workflow)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(1.0):
                app.send_task(SCHEDULE_TICK, ignore_result=True)

        ticker = threading.Thread(target=beat, daemon=True)
        ticker.start()
        try:
            wait_until(lambda: runs.count() >= self.schedules, 900, "the scheduled runs")
        finally:
            stop.set()
            ticker.join()
        late = [(created - nominal).total_seconds() for created in runs.values_list("created_at", flat=True)]
        Schedule.objects.filter(workflow=workflow).update(next_due_at=None)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(NOWHERE)
        return {
            "schedules": self.schedules,
            "p50_late_s": round(percentile(late, 50), 3),
            "p99_late_s": round(percentile(late, 99), 3),
            "last_late_s": round(max(late), 3),
            "starts_per_second": round(self.schedules / max(max(late), 1e-9), 1),
        }

    def shape_cost(self) -> dict:
        """SQL per step transition, measured in this process; Redis commands per step, system-wide."""
        steps = 10
        workflow = define(chain_definition(steps), defaults={"queue": NOWHERE})
        run, _ = run_start(workflow=workflow)
        per_step: list[tuple[int, int]] = []
        for index in range(steps):
            row = StepRun.objects.get(run=run, step_id=f"s{index}")
            with CaptureQueriesContext(connection) as queries:
                attempts.step_execute(step_run_id=row.pk, attempt=1)
            statements = [q for q in queries.captured_queries if not q["sql"].startswith(TRANSACTION_CONTROL)]
            per_step.append((len(statements), len(queries)))
        app.control.purge()

        fan = define(FAN_OUT, defaults={"queue": NOWHERE})
        fan_run, _ = run_start(workflow=fan, input={"items": list(range(50))})
        branch = StepRun.objects.filter(run=fan_run, branch_index=25).get()
        with CaptureQueriesContext(connection) as queries:
            attempts.step_execute(step_run_id=branch.pk, attempt=1)
        branch_statements = [q for q in queries.captured_queries if not q["sql"].startswith(TRANSACTION_CONTROL)]
        chunk_width = 100
        chunked = define(FAN_OUT, defaults={"queue": NOWHERE})
        with override_settings(CHORDFLOW_FAN_OUT_CHUNKS=1):  # one chunk of 100 (as in a fan-out of 3,200)
            chunk_run, _ = run_start(workflow=chunked, input={"items": list(range(chunk_width))})
        rows = list(StepRun.objects.filter(run=chunk_run, branch_index__isnull=False).values_list("pk", "parent_id"))
        with CaptureQueriesContext(connection) as queries:
            chunks.chunk_execute(parent_id=rows[0][1], step_run_ids=[pk for pk, _ in rows])
        chunk_statements = [q for q in queries.captured_queries if not q["sql"].startswith(TRANSACTION_CONTROL)]
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(NOWHERE)

        redis_ours = self.redis_commands(lambda: self.run_chordflow(define(chain_definition(50))))
        key = uuid.uuid4().hex
        redis_raw = self.redis_commands(
            lambda: self.run_raw(chain(*(noop.si(key) for _ in range(50))), key, expected=50)
        )
        return {
            "sql_per_step": median([s for s, _ in per_step[1:-1]]),
            "sql_per_step_with_transactions": median([t for _, t in per_step[1:-1]]),
            "sql_per_branch": len(branch_statements),
            "chunk_width": chunk_width,
            "sql_per_chunked_branch": len(chunk_statements) / chunk_width,
            "redis_commands_per_step": redis_ours / 50,
            "celery_redis_commands_per_task": redis_raw / 50,
        }

    def redis_commands(self, action: Callable[[], Any]) -> int:
        def total() -> int:
            return sum(v["calls"] for k, v in store().info("commandstats").items() if k.startswith("cmdstat_"))

        before = total()
        action()
        return total() - before - 2  # the two INFO calls

    def memory_growth(self, width: int, runs: int) -> dict:
        samples = []
        for _ in range(runs):
            self.run_chordflow(define(FAN_OUT), {"items": list(range(width))})
            time.sleep(0.5)
            samples.append(self.worker_rss() / 2**20)
        return {"width": width, "rss_mb_after_each_run": samples, "growth_mb": samples[-1] - samples[0]}

    def run_all(self) -> dict:
        print(f"warming up ({self.concurrency} worker processes)...", flush=True)
        self.warm_up()
        report: dict[str, Any] = {"quick": self.quick, "concurrency": self.concurrency, "database": connection.vendor}
        print("chain...", flush=True)
        report["chain"] = self.shape_chain()
        report["fan_out"] = []
        for width in self.widths:
            print(f"fan-out {width:,}...", flush=True)
            repeats = 1 if width >= 10_000 else self.repeats
            report["fan_out"].append(self.shape_fan_out(width, repeats, raw_side=width < 100_000))
        print(f"fan-out {self.io_width:,}, each branch sleeping 50 ms...", flush=True)
        report["fan_out_io"] = self.shape_fan_out(self.io_width, 1, sleep_s=0.05)
        print(f"{self.diamonds} diamonds...", flush=True)
        report["diamonds"] = self.shape_diamonds()
        print(f"{self.schedules} schedules due at once...", flush=True)
        report["schedules"] = self.shape_schedules()
        print("cost per step...", flush=True)
        report["cost"] = self.shape_cost()
        print("memory...", flush=True)
        report["memory"] = self.memory_growth(self.widths[-1], runs=2 if self.widths[-1] >= 100_000 else 3)
        observed = 20_000 if self.quick else 1_000_000
        print(f"/metrics and the metrics page with {observed:,} runs...", flush=True)
        report["observability"] = shape_observability(runs=observed)
        report["targets"] = reporting.targets(report)
        return report


class RssSampler:
    """Samples a process tree's RSS in a thread; `peak` is the highest seen."""

    def __init__(self, measure: Callable[[], int], interval: float = 0.1) -> None:
        self.measure = measure
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.measure())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
