"""`{{ expressions }}` in definitions, evaluated by Jinja2's immutable sandbox: no eval, no internals.

A string that is exactly one `{{ … }}` yields the expression's native value (list, dict, number,
bool, null); a string with text around expressions renders to a string. Values are walked
recursively, so params may be any JSON.

Expressions are bounded (docs/security.md): statements (`{% … %}`) are refused; every operator,
filter and call that can make a big value checks the size it would make first
(CHORDFLOW_MAX_EXPRESSION_SIZE); every step of the evaluation checks a deadline
(CHORDFLOW_EXPRESSION_TIMEOUT); and the value must be storable JSON of at most that size.
"""

from __future__ import annotations

import functools
import operator
import re
import string
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workflows import secrets
from workflows.exceptions import ExpressionError
from workflows.limits import UnstorableValue, check_storable, limit

SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)
DIGITS = re.compile(r"\d+")
PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?([-#0 +]*\d*(?:\.\d+)?)[a-zA-Z%]")
POWER_BITS = 4096  # `a ** b` may make an integer of at most this many bits


class ExpressionLimit(Exception):
    """An expression went past a limit; becomes an ExpressionError that names the expression."""


class _Budget(threading.local):
    """The deadline and the size limit of the evaluation under way in this thread."""

    deadline = float("inf")
    size = 1024 * 1024
    timeout = 1.0

    def start(self) -> None:
        self.timeout = float(limit("CHORDFLOW_EXPRESSION_TIMEOUT"))
        self.size = int(limit("CHORDFLOW_MAX_EXPRESSION_SIZE"))
        self.deadline = time.monotonic() + self.timeout

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise ExpressionLimit(f"took longer than {self.timeout:g}s (CHORDFLOW_EXPRESSION_TIMEOUT)")

    def fits(self, size: int, what: str) -> None:
        if size > self.size:
            raise ExpressionLimit(
                f"{what} would make {size:,} items or characters, over CHORDFLOW_MAX_EXPRESSION_SIZE ({self.size:,})"
            )

    def check_result(self, value: Any, what: str) -> Any:
        if isinstance(value, str | list | tuple | dict | bytes):
            self.fits(len(value), what)
        return value


_budget = _Budget()


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple | bytes) else None


def _check_args(what: str, args: tuple, kwargs: dict) -> None:
    """No number argument above the size limit (widths, counts, lipsum's n, …) and no huge format widths."""
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > _budget.size:
            raise ExpressionLimit(f"{what}: the number {arg} is over CHORDFLOW_MAX_EXPRESSION_SIZE ({_budget.size:,})")


def _check_format(what: str, template: Any) -> None:
    """Widths and precisions in a format string (`{:>999999999}`, `%999999999d`) within the size limit."""
    if not isinstance(template, str):
        return
    if what == "%":
        specs = [match.group(1) for match in PERCENT_SPEC.finditer(template)]
    else:
        try:
            specs = [
                spec for _text, field, spec, _conversion in string.Formatter().parse(template) if field is not None
            ]
        except ValueError:
            return  # a malformed format string fails on its own when it is used
    for spec in specs:
        for digits in DIGITS.findall(spec or ""):
            if len(digits) > 9 or int(digits) > _budget.size:
                raise ExpressionLimit(f"{what}: a width or precision of {digits} is over the size limit")


def _estimate_join(items: Any, separator: Any) -> None:
    if isinstance(items, list | tuple):
        total = len(str(separator)) * max(len(items) - 1, 0)
        for item in items:
            total += len(item) if isinstance(item, str) else len(str(item))
            if total > _budget.size:
                break
        _budget.fits(total, "join")


def _estimate_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        count = text.count(old) if old else len(text) + 1
        _budget.fits(len(text) + count * (len(new) - len(old)), "replace")


def _before_call(name: str, target: Any, args: tuple, kwargs: dict) -> None:
    """Size checks that must run before a filter or a method call that could build a big value."""
    _check_args(name, args, kwargs)
    if name in {"format", "format_map"}:
        _check_format(name, target)
    elif name == "join":
        _estimate_join(args[0] if args else kwargs.get("iterable"), target)
    elif name == "replace" and len(args) >= 2:
        _estimate_replace(target, args[0], args[1])
    elif name == "indent" and isinstance(target, str):
        width = args[0] if args else kwargs.get("width", 4)
        _budget.fits(len(target) + len(str(width)) * (target.count("\n") + 1), "indent")


def _bounded_filter(name: str, fn):
    @functools.wraps(fn)
    def bounded(*args, **kwargs):
        _budget.tick()
        # pass_context / pass_environment filters get those first; the value follows.
        offset = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0
        value, rest = (args[offset], args[offset + 1 :]) if len(args) > offset else (None, ())
        if name == "join":
            separator = rest[0] if rest else kwargs.get("d", "")
            _check_args(name, rest, kwargs)
            if not isinstance(value, list | tuple | str):  # e.g. map's generator: read it once, here
                value = list(value)
                args = (*args[:offset], value, *rest)
            _estimate_join(value, separator)
        elif name == "replace" and len(rest) >= 2:
            _check_args(name, rest, kwargs)
            _estimate_replace(value, rest[0], rest[1])
        elif name == "format":  # the filter formats with %
            _check_args(name, rest, kwargs)
            _check_format("%", value)
        elif name == "sum":
            start = kwargs.get("start", rest[1] if len(rest) > 1 else 0)
            if not isinstance(start, int | float):
                raise ExpressionLimit("sum adds numbers: give it no start, or a number")
        else:
            _before_call(name, value, rest, kwargs)
        return _budget.check_result(fn(*args, **kwargs), name)

    return bounded


def _sum_checked(left: Any, right: Any) -> Any:
    a, b = _sized(left), _sized(right)
    if a is not None and b is not None:
        _budget.fits(a + b, "+")
    return operator.add(left, right)


def _times_checked(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        size = _sized(seq)
        if size is not None and isinstance(count, int) and not isinstance(count, bool):
            _budget.fits(size * max(count, 0), "*")
    return operator.mul(left, right)


def _power_checked(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        if right * abs(left).bit_length() > POWER_BITS:
            raise ExpressionLimit(f"{left} ** {right} is too big a number")
    return operator.pow(left, right)


def _modulo_checked(left: Any, right: Any) -> Any:
    _check_format("%", left)
    return operator.mod(left, right)


_CHECKED_BINOPS = {"+": _sum_checked, "*": _times_checked, "**": _power_checked, "%": _modulo_checked}


def bounded_range(*args: int) -> range:
    """range() whose length is within the size limit (the sandbox's own cap is 100,000)."""
    _check_args("range", args, {})
    numbers = range(*args)
    _budget.fits(len(numbers), "range")
    return numbers


@pass_context
def _secret(context, name: str) -> str:
    """`secret('NAME')`: a signed reference to the secret, revealed only when the action runs."""
    run = context.get("run") or {}
    try:
        return secrets.reference(str(run.get("id", "")), name)
    except ValueError as exc:
        raise ExpressionLimit(str(exc)) from None


class _DataFirstEnvironment(ImmutableSandboxedEnvironment):
    """`x.items` reads the key "items" of a JSON object before the dict method of that name.

    Expressions read JSON data, where a key named items, keys or values is common (the issue's own
    example reads `output.json.items`); Jinja's default would return the bound method instead.

    Every attribute, item, call and operator checks the deadline; operators and calls that can make
    a big value check its size first.
    """

    intercepted_binops = frozenset(_CHECKED_BINOPS)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget.tick()
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget.tick()
        return super().getitem(obj, argument)

    def call_binop(self, context, operator_name: str, left: Any, right: Any) -> Any:
        _budget.tick()
        return _budget.check_result(_CHECKED_BINOPS[operator_name](left, right), operator_name)

    def call(__self, __context, __obj, *args, **kwargs):
        _budget.tick()
        name = getattr(__obj, "__name__", "")
        # str.format reaches here wrapped by the sandbox: the string is the wrapped method's __self__
        target = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        _before_call(name, target, args, kwargs)
        return _budget.check_result(super().call(__context, __obj, *args, **kwargs), name or "a call")


_env = _DataFirstEnvironment(undefined=StrictUndefined, autoescape=False)
_env.filters = {name: _bounded_filter(name, fn) for name, fn in _env.filters.items()}
# lipsum makes text out of nothing; namespace, cycler and joiner serve statements, which are refused.
_env.globals = {"range": bounded_range, "dict": _env.globals["dict"], "secret": _secret}
GLOBAL_NAMES = frozenset(_env.globals)  # always in scope


def has_expression(value: str) -> bool:
    return "{{" in value or "{%" in value


@lru_cache(maxsize=4096)
def _compiled_expression(source: str):
    return _env.compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(source: str):
    _refuse_statements(_env.parse(source))
    return _env.from_string(source)


def _refuse_statements(tree: nodes.Template) -> None:
    """Only `{{ … }}` and text: loops, assignments and macros would escape the size checks."""
    for node in tree.find_all(nodes.Stmt):
        if not isinstance(node, nodes.Output):
            raise ExpressionError(
                f"statements ({{% {type(node).__name__.lower()} … %}}) are not supported: "
                "use {{ … }} expressions, with filters such as map, select and join"
            )


def evaluate_string(value: str, context: dict[str, Any]) -> Any:
    if not has_expression(value):
        return value
    _budget.start()
    try:
        match = SINGLE_EXPRESSION.match(value)
        if match:
            result = _compiled_expression(match.group("expr").strip())(**context)
            if isinstance(result, Undefined):
                str(result)  # StrictUndefined raises here, with the name that is missing
        else:
            result = _render(_compiled_template(value), context)
        check_storable(result, max_bytes=_budget.size, what="its value", setting="CHORDFLOW_MAX_EXPRESSION_SIZE")
        return result
    except ExpressionError as exc:
        raise ExpressionError(f"{value!r}: {exc}") from None
    except TemplateError as exc:
        raise ExpressionError(f"{value!r}: {exc.message or exc}") from None
    except (ExpressionLimit, UnstorableValue) as exc:
        raise ExpressionError(f"{value!r}: {exc}") from None
    except Exception as exc:  # an error inside the expression itself, e.g. 1 / 0 or a bad comparison
        raise ExpressionError(f"{value!r}: {exc.__class__.__name__}: {exc}") from None


def _render(template, context: dict[str, Any]) -> str:
    """Render piece by piece, so text around expressions is bounded too."""
    pieces, size = [], 0
    for piece in template.generate(**context):
        size += len(piece)
        _budget.fits(size, "the text")
        _budget.tick()
        pieces.append(piece)
    return "".join(pieces)


def evaluate(value: Any, context: dict[str, Any]) -> Any:
    """Resolve every expression in a JSON value."""
    if isinstance(value, str):
        return evaluate_string(value, context)
    if isinstance(value, list):
        return [evaluate(item, context) for item in value]
    if isinstance(value, dict):
        return {key: evaluate(item, context) for key, item in value.items()}
    return value


def strings_with_paths(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON value that holds an expression, with its path."""
    if isinstance(value, str):
        if has_expression(value):
            yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings_with_paths(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_with_paths(item, f"{path}.{key}")


def parse(value: str) -> nodes.Template:
    """Parse a string with expressions, raising ExpressionError with the reason when it does not."""
    try:
        match = SINGLE_EXPRESSION.match(value)
        # Both forms parse as a template; a lone expression is what compile_expression will see.
        tree = _env.parse(f"{{{{ {match.group('expr')} }}}}" if match else value)
    except TemplateError as exc:
        raise ExpressionError(f"does not parse: {exc.message or exc}") from None
    _refuse_statements(tree)
    return tree


def referenced_names(tree: nodes.Template) -> set[str]:
    """Top-level names an expression reads (`input`, `steps`, `item`, …)."""
    return {node.name for node in tree.find_all(nodes.Name) if node.ctx == "load"}


def referenced_steps(tree: nodes.Template) -> set[str]:
    """Step ids read as `steps.<id>` or `steps['<id>']`."""
    found: set[str] = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "steps":
            found.add(node.attr)
    for node in tree.find_all(nodes.Getitem):
        if isinstance(node.node, nodes.Name) and node.node.name == "steps" and isinstance(node.arg, nodes.Const):
            found.add(str(node.arg.value))
    return found


def referenced_secrets(tree: nodes.Template) -> tuple[set[str], list[str]]:
    """Names read as `secret('NAME')`, and what is wrong with the other calls of secret()."""
    names: set[str] = set()
    problems: list[str] = []
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name == "secret"):
            continue
        arg = call.args[0] if len(call.args) == 1 and not call.kwargs else None
        if not isinstance(arg, nodes.Const) or not isinstance(arg.value, str) or not secrets.NAME.match(arg.value):
            problems.append(
                "secret() takes one quoted name of upper-case letters, digits and _, e.g. secret('API_KEY')"
            )
        else:
            names.add(arg.value)
    return names, problems
