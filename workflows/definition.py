"""Parse and validate a workflow definition into a WorkflowSpec, reporting every problem at once."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from workflows import actions, expressions, graph, limits
from workflows.exceptions import DefinitionError, ExpressionError, InputValidationError, Problem
from workflows.spec import (
    CONCURRENCY_QUEUE,
    CONCURRENCY_STRATEGIES,
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT_SECONDS,
    ON_FAILURE_CHOICES,
    ON_FAILURE_ESCALATE,
    ON_FAILURE_FAIL_RUN,
    STEP_TYPE_ACTION,
    Concurrency,
    RateLimit,
    RetryPolicy,
    StepSpec,
    WorkflowSpec,
)

STEP_ID = re.compile(r"^[a-z][a-z0-9_]*$")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
TOP_KEYS = {
    "name", "description", "input_schema", "example_input", "defaults", "steps", "output", "escalate_to",
    "retention_days", "concurrency",
}  # fmt: skip
MAX_RETENTION_DAYS = 100 * 365
CONCURRENCY_KEYS = {"limit", "key", "strategy"}
MAX_CONCURRENCY_LIMIT = 10_000
DEFAULT_KEYS = {"retry", "timeout", "queue", "on_failure", "rate_limit"}
RATE_LIMIT_KEYS = {"limit", "per", "key"}
MAX_RATE_LIMIT = 100_000
MAX_RATE_PER_SECONDS = 24 * 3600
STEP_KEYS = {"id", "description", "type", "action", "depends_on", "params", "when", "for_each", *DEFAULT_KEYS}
RETRY_KEYS = {"max_attempts", "backoff", "backoff_max", "jitter"}
MAX_ATTEMPTS_LIMIT = 100
MAX_TIMEOUT_SECONDS = 24 * 3600
MAX_DEFINITION_BYTES = 2 * 1024 * 1024  # as JSON
MAX_INPUT_BYTES = 16 * 1024 * 1024  # as JSON; a REST request is bounded lower (CHORDFLOW_API_MAX_BODY_BYTES)
RUN_NAMES = {"input", "steps", "run"}
RATE_KEY_NAMES = {"params", "item", "index"}  # what a rate limit's key sees: the step's resolved params
BRANCH_NAMES = {"item", "index"}


# Step types other than "action", registered by the apps that run them (approvals registers
# "approval"): the name maps to a function that checks the step's params, returning its problems.
StepParamsValidator = Callable[[Any, str], list[Problem]]
_step_types: dict[str, StepParamsValidator] = {}


def register_step_type(name: str, validate_params: StepParamsValidator) -> None:
    _step_types[name] = validate_params


def people_problems(value: Any, path: str) -> list[Problem]:
    """Check a {"users": [...], "groups": [...]} object naming at least one user or group."""
    if not isinstance(value, dict):
        return [Problem(path, 'must be an object like {"users": ["alice"], "groups": ["finance"]}')]
    problems = [
        Problem(f"{path}.{key}", "unknown key (allowed: groups, users)")
        for key in value
        if key not in {"users", "groups"}
    ]
    for key in ("users", "groups"):
        names = value.get(key, [])
        if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
            problems.append(Problem(f"{path}.{key}", "must be a list of names"))
    if not problems and not (value.get("users") or value.get("groups")):
        problems.append(Problem(path, "must name at least one user or group"))
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Validator:
    """Collects problems while building the spec; `spec()` raises DefinitionError if there are any."""

    def __init__(self, definition: Any, *, stored: bool = False) -> None:
        self.definition = definition
        self.stored = stored  # a version saved before: the rules that apply only at save are skipped
        self.problems: list[Problem] = []
        self.step_ids: set[str] = set()

    def example_input(self, d: dict, input_schema: dict) -> None:
        """An `example_input` (what the admin's start form is prefilled with) must be a valid input."""
        if "example_input" not in d:
            return
        errors = Draft202012Validator(input_schema).iter_errors(d["example_input"])
        for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
            self.problem(f"example_input{_json_path(error.absolute_path)}", error.message)

    def problem(self, path: str, message: str, *, save_only: bool = False) -> None:
        """`save_only`: a rule newer than some stored versions; they keep working (their runs fail clearly)."""
        if not (save_only and self.stored):
            self.problems.append(Problem(path, message))

    def unknown_keys(self, value: dict, allowed: set[str], path: str) -> None:
        for key in value:
            if key not in allowed:
                self.problem(f"{path}.{key}" if path else key, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    # --- pieces -----------------------------------------------------------------------------------
    def retry(self, value: Any, path: str, base: RetryPolicy) -> RetryPolicy:
        if value is None:
            return base
        if not isinstance(value, dict):
            self.problem(path, "must be an object with max_attempts, backoff, backoff_max, jitter")
            return base
        self.unknown_keys(value, RETRY_KEYS, path)
        fields = {
            "max_attempts": value.get("max_attempts", base.max_attempts),
            "backoff": value.get("backoff", base.backoff),
            "backoff_max": value.get("backoff_max", base.backoff_max),
            "jitter": value.get("jitter", base.jitter),
        }
        attempts = fields["max_attempts"]
        if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= MAX_ATTEMPTS_LIMIT:
            self.problem(f"{path}.max_attempts", f"must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}")
        for key in ("backoff", "backoff_max"):
            if not _is_number(fields[key]) or fields[key] < 0:
                self.problem(f"{path}.{key}", "must be a number of seconds >= 0")
        if not isinstance(fields["jitter"], bool):
            self.problem(f"{path}.jitter", "must be true or false")
        try:
            return RetryPolicy(**fields)
        except TypeError:
            return base

    def timeout(self, value: Any, path: str, base: float) -> float:
        if value is None:
            return base
        if not _is_number(value) or not 0 < value <= MAX_TIMEOUT_SECONDS:
            self.problem(path, f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS}")
            return base
        return float(value)

    def queue(self, value: Any, path: str, base: str) -> str:
        if value is None:
            return base
        if not isinstance(value, str) or not QUEUE_NAME.match(value):
            self.problem(path, "must be a queue name of letters, digits and _ . : - (at most 100)")
            return base
        return value

    def on_failure(self, value: Any, path: str, base: str) -> str:
        if value is None:
            return base
        if value not in ON_FAILURE_CHOICES:
            self.problem(path, f"must be one of: {', '.join(ON_FAILURE_CHOICES)}")
            return base
        return value

    def expressions_in(
        self,
        value: Any,
        path: str,
        *,
        allowed_names: set[str],
        allowed_steps: set[str] | None,
        secrets: set[str] | None = None,
    ) -> set[str]:
        """Check every expression in `value` parses and reads only names and steps it may; return the steps read.

        Secret names read are added to `secrets`; None means secret() may not be used here.
        """
        read: set[str] = set()
        for where, text in expressions.strings_with_paths(value, path):
            try:
                tree = expressions.parse(text)
            except ExpressionError as exc:
                self.problem(where, str(exc), save_only=isinstance(exc, expressions.StatementError))
                continue
            read |= expressions.referenced_steps(tree)
            names, problems = expressions.referenced_secrets(tree)
            for message in problems:
                self.problem(where, message, save_only=True)
            if names and secrets is None:
                message = "secret() may be used only in the params of an action step, never stored"
                self.problem(where, message, save_only=True)
            elif names:
                secrets |= names
            for name in sorted(expressions.referenced_names(tree) - allowed_names - expressions.GLOBAL_NAMES):
                self.problem(
                    where,
                    f"unknown name {name!r}; expressions here see {', '.join(sorted(allowed_names))}",
                    save_only=name in expressions.REMOVED_NAMES,
                )
            if allowed_steps is None:
                continue
            for step_id in sorted(expressions.referenced_steps(tree) - allowed_steps):
                if step_id in self.step_ids:
                    message = f"reads steps.{step_id}, which is not a step this one depends on (directly or not)"
                    self.problem(where, message)
                else:
                    self.problem(where, f"reads steps.{step_id}, but there is no step {step_id!r}")
        return read

    # --- the whole definition ---------------------------------------------------------------------
    def spec(self) -> WorkflowSpec:
        d = self.definition
        if not isinstance(d, dict):
            raise DefinitionError([Problem("", "a definition must be an object (mapping)")])
        try:  # first, so that nothing below walks a value too deep or too big
            if not self.stored:
                limits.check_storable(d, max_bytes=MAX_DEFINITION_BYTES, what="the definition")
        except limits.UnstorableValue as exc:
            raise DefinitionError([Problem("", str(exc))]) from None
        self.unknown_keys(d, TOP_KEYS, "")
        name = d.get("name")
        if not isinstance(name, str) or not name.strip():
            self.problem("name", "is required: a non-empty string")
        description = d.get("description", "")
        if not isinstance(description, str):
            self.problem("description", "must be a string")
        input_schema = d.get("input_schema")
        if input_schema is not None:
            if not isinstance(input_schema, dict):
                self.problem("input_schema", "must be a JSON Schema object")
            else:
                try:
                    Draft202012Validator.check_schema(input_schema)
                except SchemaError as exc:
                    self.problem(f"input_schema{_json_path(exc.path)}", f"is not a valid JSON Schema: {exc.message}")
                else:
                    self.example_input(d, input_schema)

        defaults = d.get("defaults", {})
        retry_default, timeout_default, queue_default, on_failure_default = (
            RetryPolicy(),
            float(DEFAULT_TIMEOUT_SECONDS),
            DEFAULT_QUEUE,
            ON_FAILURE_FAIL_RUN,
        )
        if not isinstance(defaults, dict):
            self.problem("defaults", "must be an object")
        else:
            self.unknown_keys(defaults, DEFAULT_KEYS, "defaults")
            retry_default = self.retry(defaults.get("retry"), "defaults.retry", retry_default)
            timeout_default = self.timeout(defaults.get("timeout"), "defaults.timeout", timeout_default)
            queue_default = self.queue(defaults.get("queue"), "defaults.queue", queue_default)
            on_failure_default = self.on_failure(defaults.get("on_failure"), "defaults.on_failure", on_failure_default)
        rate_default = None
        if isinstance(defaults, dict):
            rate_default = self.rate_limit(defaults.get("rate_limit"), "defaults.rate_limit", None)

        raw_steps = d.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            self.problem("steps", "is required: a non-empty list of steps")
            raw_steps = []
        elif len(raw_steps) > (max_steps := limits.limit("CHORDFLOW_MAX_STEPS")) and not self.stored:
            message = f"has {len(raw_steps):,} steps, over the limit of {max_steps:,} (CHORDFLOW_MAX_STEPS)"
            self.problem("steps", message)
            raise DefinitionError(self.problems)

        steps: list[StepSpec] = []
        paths: dict[str, str] = {}
        for index, raw in enumerate(raw_steps):
            path = f"steps[{index}]"
            if not isinstance(raw, dict):
                self.problem(path, "must be an object")
                continue
            self.unknown_keys(raw, STEP_KEYS, path)
            step_id = raw.get("id")
            if not isinstance(step_id, str) or not STEP_ID.match(step_id):
                self.problem(f"{path}.id", "is required: lowercase letters, digits and _, starting with a letter")
                step_id = f"<steps[{index}]>"
            elif step_id in paths:
                self.problem(f"{path}.id", f"duplicate id {step_id!r} (first at {paths[step_id]})")
            else:
                paths[step_id] = path
            step_type = raw.get("type", STEP_TYPE_ACTION)
            action_name = raw.get("action")
            if step_type == STEP_TYPE_ACTION:
                if not isinstance(action_name, str) or not action_name:
                    self.problem(f"{path}.action", "is required: the name of a registered action")
                elif not actions.is_registered(action_name):
                    known = ", ".join(actions.registered_actions())
                    self.problem(f"{path}.action", f"unknown action {action_name!r} (registered: {known})")
            elif step_type in _step_types:
                for key in ("action", "for_each"):
                    if key in raw:
                        self.problem(f"{path}.{key}", f"a step of type {step_type!r} takes no {key}")
                self.problems.extend(_step_types[step_type](raw.get("params", {}), f"{path}.params"))
            else:
                known = ", ".join(sorted({STEP_TYPE_ACTION, *_step_types}))
                self.problem(f"{path}.type", f"unknown step type {step_type!r} (known: {known})")
            if raw.get("on_failure") == ON_FAILURE_ESCALATE and "for_each" in raw:
                self.problem(
                    f"{path}.on_failure", "escalate is not supported on a for_each step: use continue or fail_run"
                )
            elif raw.get("on_failure") == ON_FAILURE_ESCALATE and step_type != STEP_TYPE_ACTION:
                self.problem(
                    f"{path}.on_failure",
                    f"escalate is not supported on a step of type {step_type!r}: people decide it already; "
                    "use continue or fail_run",
                )
            depends_on = raw.get("depends_on", [])
            if not isinstance(depends_on, list) or not all(isinstance(dep, str) for dep in depends_on):
                self.problem(f"{path}.depends_on", "must be a list of step ids")
                depends_on = []
            for field in ("when", "for_each"):
                if field in raw and not isinstance(raw[field], str):
                    self.problem(f"{path}.{field}", "must be a string holding an expression")
            steps.append(
                StepSpec(
                    id=step_id,
                    type=step_type if isinstance(step_type, str) else STEP_TYPE_ACTION,
                    action=action_name if isinstance(action_name, str) else "",
                    depends_on=tuple(depends_on),
                    params=raw.get("params", {}),
                    when=raw["when"] if isinstance(raw.get("when"), str) else None,
                    for_each=raw["for_each"] if isinstance(raw.get("for_each"), str) else None,
                    retry=self.retry(raw.get("retry"), f"{path}.retry", retry_default),
                    timeout=self.timeout(raw.get("timeout"), f"{path}.timeout", timeout_default),
                    queue=self.queue(raw.get("queue"), f"{path}.queue", queue_default),
                    on_failure=self.on_failure(raw.get("on_failure"), f"{path}.on_failure", on_failure_default),
                    rate_limit=self.rate_limit(raw.get("rate_limit"), f"{path}.rate_limit", rate_default),
                )
            )

        self.check_graph(steps, paths)
        output_reads = self.output_expression(d.get("output"), set(paths))
        escalate_to = d.get("escalate_to")
        if escalate_to is not None:
            self.problems.extend(people_problems(escalate_to, "escalate_to"))
        retention = d.get("retention_days")
        if retention is not None and (
            not isinstance(retention, int) or isinstance(retention, bool) or not 0 <= retention <= MAX_RETENTION_DAYS
        ):
            self.problem("retention_days", f"must be a whole number of days from 0 to {MAX_RETENTION_DAYS}")
            retention = None
        concurrency = self.concurrency(d.get("concurrency"))
        if self.problems:
            raise DefinitionError(self.problems)
        return WorkflowSpec(
            name=name,
            description=description,
            input_schema=input_schema,
            steps=tuple(steps),
            output=d.get("output"),
            escalate_to=escalate_to,
            output_reads=output_reads,
            retention_days=retention,
            concurrency=concurrency,
        )

    def rate_limit(self, raw: Any, path: str, base: RateLimit | None) -> RateLimit | None:
        if raw is None:
            return base
        if not isinstance(raw, dict):
            self.problem(path, "must be an object: {limit: N, per: seconds, key: '{{ item.customer }}'}")
            return base
        self.unknown_keys(raw, RATE_LIMIT_KEYS, path)
        limit, per, key = raw.get("limit"), raw.get("per", 1), raw.get("key")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_RATE_LIMIT:
            self.problem(f"{path}.limit", f"must be a whole number from 1 to {MAX_RATE_LIMIT}")
            limit = 1
        if not _is_number(per) or not 0.001 <= per <= MAX_RATE_PER_SECONDS:
            self.problem(f"{path}.per", f"must be a number of seconds from 0.001 to {MAX_RATE_PER_SECONDS}")
            per = 1
        if key is not None:
            if not isinstance(key, str) or not expressions.has_expression(key):
                self.problem(f"{path}.key", "must be a string holding an expression: '{{ params.account }}'")
                key = None
            else:
                self.expressions_in(key, f"{path}.key", allowed_names=RATE_KEY_NAMES, allowed_steps=None)
        return RateLimit(limit=limit, per=float(per), key=key)

    def concurrency(self, raw: Any) -> Concurrency | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.problem("concurrency", "must be an object: {limit: N, key: '{{ input.… }}', strategy: queue}")
            return None
        self.unknown_keys(raw, CONCURRENCY_KEYS, "concurrency")
        limit = raw.get("limit")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_CONCURRENCY_LIMIT:
            self.problem("concurrency.limit", f"must be a whole number from 1 to {MAX_CONCURRENCY_LIMIT}")
            limit = 1
        key = raw.get("key")
        if key is not None:
            if not isinstance(key, str) or not expressions.has_expression(key):
                self.problem(
                    "concurrency.key", "must be a string holding an expression, e.g. '{{ input.customer_id }}'"
                )
                key = None
            else:
                self.expressions_in(key, "concurrency.key", allowed_names={"input"}, allowed_steps=None)
        strategy = raw.get("strategy", CONCURRENCY_QUEUE)
        if strategy not in CONCURRENCY_STRATEGIES:
            self.problem("concurrency.strategy", f"must be one of {', '.join(CONCURRENCY_STRATEGIES)}")
            strategy = CONCURRENCY_QUEUE
        return Concurrency(limit=limit, key=key, strategy=strategy)

    def check_graph(self, steps: list[StepSpec], paths: dict[str, str]) -> None:
        known = self.step_ids = set(paths)
        for index, step in enumerate(steps):
            for dep_index, dep in enumerate(step.depends_on):
                if dep not in known:
                    self.problem(f"steps[{index}].depends_on[{dep_index}]", f"unknown step id {dep!r}")
                elif dep == step.id:
                    self.problem(f"steps[{index}].depends_on[{dep_index}]", "a step cannot depend on itself")
        deps: dict[str, list[str]] = {}
        for step in steps:  # a duplicate id is reported already; the first one stands
            deps.setdefault(step.id, [d for d in step.depends_on if d in known and d != step.id])
        cycle = graph.find_cycle(deps)
        if cycle:
            self.problem(f"{paths[cycle[0]]}.depends_on", f"dependency cycle: {' -> '.join(cycle)}")
        # In a cycle "ancestor" means nothing: expressions are checked against every known step.
        upstream_bits = {} if cycle else graph.ancestor_sets(deps)
        position = {step_id: index for index, step_id in enumerate(deps)}
        for index, step in enumerate(steps):
            path = f"steps[{index}]"
            upstream = known - {step.id} if cycle else _UpstreamSet(upstream_bits.get(step.id, 0), position)
            names = RUN_NAMES | BRANCH_NAMES if step.for_each else RUN_NAMES
            secret_names: set[str] = set()
            reads = (
                self.expressions_in(step.when, f"{path}.when", allowed_names=RUN_NAMES, allowed_steps=upstream)
                | self.expressions_in(
                    step.for_each, f"{path}.for_each", allowed_names=RUN_NAMES, allowed_steps=upstream
                )
                | self.expressions_in(
                    step.params,
                    f"{path}.params",
                    allowed_names=names,
                    allowed_steps=upstream,
                    secrets=secret_names if step.type == STEP_TYPE_ACTION else None,
                )
            )
            steps[index] = replace(step, reads=frozenset(reads), secrets=frozenset(secret_names))
            if step.for_each is not None and not expressions.has_expression(step.for_each):
                self.problem(f"{path}.for_each", "must be an expression giving a list, e.g. '{{ input.items }}'")

    def output_expression(self, output: Any, known: set[str]) -> frozenset[str]:
        if output is None:
            return frozenset()
        return frozenset(self.expressions_in(output, "output", allowed_names=RUN_NAMES, allowed_steps=known))


class _UpstreamSet:
    """The ids whose bits are set: membership is one shift, with no set built per step."""

    def __init__(self, bits: int, position: dict[str, int]) -> None:
        self.bits, self.position = bits, position

    def __contains__(self, step_id: object) -> bool:
        index = self.position.get(step_id)  # type: ignore[arg-type]
        return index is not None and bool(self.bits >> index & 1)

    def __rsub__(self, other: set[str]) -> set[str]:
        return {step_id for step_id in other if step_id not in self}


def _json_path(parts) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def parse_definition(definition: Any, *, stored: bool = False) -> WorkflowSpec:
    """The spec of a valid definition; DefinitionError listing every problem otherwise.

    `stored`: a version saved earlier, parsed to run it. The limits added since it was saved
    (steps, size and depth, statements, the names statements used, secret() rules) are not applied
    to it: its runs go on, and an expression the new rules refuse fails its step when evaluated.
    """
    return _Validator(definition, stored=stored).spec()


def validate_input(spec: WorkflowSpec, data: Any) -> None:
    """Raise InputValidationError with every schema error (path and message) when `data` does not fit."""
    try:
        limits.check_storable(data, max_bytes=MAX_INPUT_BYTES, what="the input")
    except limits.UnstorableValue as exc:
        raise InputValidationError([Problem("input", str(exc))]) from None
    if spec.input_schema is None:
        return
    validator = Draft202012Validator(spec.input_schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise InputValidationError([Problem(f"input{_json_path(e.absolute_path)}", e.message) for e in errors])
