"""The parsed, validated form of a definition: frozen values that the engine plans with."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from workflows import graph

ON_FAILURE_FAIL_RUN = "fail_run"
ON_FAILURE_CONTINUE = "continue"
ON_FAILURE_ESCALATE = "escalate"  # an operator decides: retry, skip or fail (the approvals app)
ON_FAILURE_CHOICES = (ON_FAILURE_FAIL_RUN, ON_FAILURE_CONTINUE, ON_FAILURE_ESCALATE)
STEP_TYPE_ACTION = "action"

DEFAULT_TIMEOUT_SECONDS = 300
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first attempt; retry k waits min(backoff * 2**(k-1), backoff_max)."""

    max_attempts: int = 3
    backoff: float = 1.0
    backoff_max: float = 60.0
    jitter: bool = True

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the second attempt)."""
        ceiling = min(self.backoff * 2 ** (retry - 1), self.backoff_max)
        if self.jitter:
            return (rng or random).uniform(0, ceiling)
        return ceiling


CONCURRENCY_QUEUE = "queue"  # a run over the limit waits (pending) for a slot of its bucket
CONCURRENCY_CANCEL_NEWEST = "cancel_newest"  # the new run is cancelled at once
CONCURRENCY_CANCEL_IN_PROGRESS = "cancel_in_progress"  # the bucket's oldest running run is cancelled
CONCURRENCY_STRATEGIES = (CONCURRENCY_QUEUE, CONCURRENCY_CANCEL_NEWEST, CONCURRENCY_CANCEL_IN_PROGRESS)


@dataclass(frozen=True)
class Concurrency:
    """At most `limit` runs of a bucket running (or waiting) at once; `key` (an expression over the input)
    splits the workflow into buckets, one bucket without it."""

    limit: int
    key: str | None = None
    strategy: str = CONCURRENCY_QUEUE


@dataclass(frozen=True)
class RateLimit:
    """No more than `limit` starts of the step (per value of `key`) in any `per` seconds, on every worker."""

    limit: int
    per: float
    key: str | None = None


@dataclass(frozen=True)
class StepSpec:
    id: str
    action: str
    type: str = STEP_TYPE_ACTION  # another type (e.g. "approval") is handled by the app that registers it
    depends_on: tuple[str, ...] = ()
    params: Any = field(default_factory=dict)
    when: str | None = None
    for_each: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    queue: str = DEFAULT_QUEUE
    on_failure: str = ON_FAILURE_FAIL_RUN
    reads: frozenset[str] = frozenset()  # step ids its expressions read (`steps.<id>`): outputs to load
    secrets: frozenset[str] = frozenset()  # names its params read as secret('NAME'): revealed when it runs
    rate_limit: RateLimit | None = None

    @property
    def continues_on_failure(self) -> bool:
        return self.on_failure == ON_FAILURE_CONTINUE


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    steps: tuple[StepSpec, ...]
    description: str = ""
    input_schema: dict | None = None
    output: Any = None
    escalate_to: dict | None = None  # {"users": [...], "groups": [...]}: who resolves escalations
    output_reads: frozenset[str] = frozenset()  # step ids the run's output expression reads
    retention_days: int | None = None  # finished runs older than this are deleted (None: the setting)
    concurrency: Concurrency | None = None

    def step(self, step_id: str) -> StepSpec:
        return self.steps_by_id[step_id]

    @cached_property
    def steps_by_id(self) -> dict[str, StepSpec]:
        return {step.id: step for step in self.steps}

    @cached_property
    def dependencies(self) -> dict[str, tuple[str, ...]]:
        return {step.id: step.depends_on for step in self.steps}

    @cached_property
    def neighbourhood(self) -> dict[str, frozenset[str]]:
        """For each step: the steps that depend on it, their dependencies, and what they read.

        After a step succeeds, only these can become ready, and only these are needed to decide it.
        """
        reverse = graph.dependents(self.dependencies)
        return {
            step_id: frozenset(
                {d for d in children}.union(
                    *(set(self.steps_by_id[d].depends_on) | set(self.steps_by_id[d].reads) for d in children)
                )
            )
            for step_id, children in reverse.items()
        }

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each step's place in the definition."""
        return {step.id: index for index, step in enumerate(self.steps)}
