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
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from workflows import secrets
from workflows.exceptions import ExpressionError
from workflows.limits import UnstorableValue, check_storable, limit

SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)
DIGITS = re.compile(r"\d+")
PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?([-#0 +]*(?:\d+|\*)?(?:\.(?:\d+|\*))?)[a-zA-Z%]")
POWER_BITS = 4096  # `a ** b` may make an integer of at most this many bits


class ExpressionLimit(Exception):
    """An expression went past a limit; becomes an ExpressionError that names the expression."""


# Methods an expression may call on data: none of them returns more than it was given. The rest
# (join, replace, format, center, expandtabs, translate, zfill, …) can multiply a value in one C
# call, before any check could run; the filters of those names are bounded instead.
SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        "capitalize casefold count endswith find index isalnum isalpha isascii isdecimal isdigit "
        "islower isnumeric isspace istitle isupper lower lstrip partition removeprefix removesuffix "
        "rfind rindex rpartition rsplit rstrip split splitlines startswith strip swapcase title upper".split()
    ),
    dict: frozenset({"get", "keys", "values", "items"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
}
NO_METHODS = (int, float, bytes, bool)
# Filters that serve only text layout and are quadratic or unbounded on big inputs.
DROPPED_FILTERS = {"wordwrap", "pprint"}
PRODUCED_FACTOR = 16  # one expression may build at most this many times the size limit, in all


class _Budget(threading.local):
    """The deadline, the size limit and what the evaluation under way has built, in this thread."""

    deadline = float("inf")
    size = 1024 * 1024
    timeout = 1.0
    produced = 0
    step: str | None = None

    def start(self) -> None:
        self.timeout = float(limit("CHORDFLOW_EXPRESSION_TIMEOUT"))
        self.size = int(limit("CHORDFLOW_MAX_EXPRESSION_SIZE"))
        self.deadline = time.monotonic() + self.timeout
        self.produced = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise ExpressionLimit(f"took longer than {self.timeout:g}s (CHORDFLOW_EXPRESSION_TIMEOUT)")

    def fits(self, size: int, what: str) -> None:
        if size > self.size:
            raise ExpressionLimit(
                f"{what} would make {size:,} items or characters, over CHORDFLOW_MAX_EXPRESSION_SIZE ({self.size:,})"
            )

    def spend(self, value: Any, what: str) -> Any:
        """Count a value an operation built: within the size limit, and all of them within PRODUCED_FACTOR x."""
        if isinstance(value, str | bytes | list | tuple | dict):
            size = content_size(value, self.size)
            self.fits(size, what)
            self.produced += size
            if self.produced > PRODUCED_FACTOR * self.size:
                raise ExpressionLimit(
                    f"built more than {PRODUCED_FACTOR * self.size:,} items or characters in all "
                    f"({PRODUCED_FACTOR} x CHORDFLOW_MAX_EXPRESSION_SIZE)"
                )
        return value


_budget = _Budget()


def content_size(value: Any, cap: int) -> int:
    """Characters and items in a value, each shared reference counted again; stops counting past `cap`.

    A list of a thousand references to one 1 MB string costs 1 GB once printed, so it counts as 1 GB.
    """
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += max(len(item), 1)
        elif isinstance(item, dict):
            total += max(len(item), 1)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += max(len(item), 1)
            stack.extend(item)
        else:
            total += 1
        if total > cap:
            break
    return total


def _text_size(value: Any) -> int:
    """At most how long str(value) is, for a value within the size limit (repr escapes up to 4x)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() * 30103 // 100000 + 2  # decimal digits, and a sign
    if isinstance(value, float | bool) or value is None:
        return 32
    return 4 * content_size(value, _budget.size) + 2


def _check_width(what: str, width: Any) -> None:
    if isinstance(width, int) and not isinstance(width, bool):
        _budget.fits(abs(width), what)


def _percent_format_size(template: Any, args: Any) -> None:
    """`template % args` (and the |format filter): each conversion prints at most its width or its argument."""
    if not isinstance(template, str):
        return
    specs = PERCENT_SPEC.findall(template)
    values = list(args.values()) if isinstance(args, dict) else list(args) if isinstance(args, tuple | list) else [args]
    widest = max((int(d) if len(d) <= 12 else 10**12 for spec in specs for d in DIGITS.findall(spec)), default=0)
    if any("*" in spec for spec in specs):
        widest = max([widest, *(abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool))])
    longest = max((_text_size(v) for v in values), default=0)
    _budget.fits(len(template) + len(specs) * (widest + longest), "%")


def _join_size(items: Any, separator: Any) -> None:
    if isinstance(items, str):
        items = list(items)
    separator_size = _text_size(separator)
    total = separator_size * max(len(items) - 1, 0)
    for item in items:
        if not (isinstance(item, str | int | float | bool) or item is None):
            raise ExpressionLimit(f"join joins strings and numbers, not a {type(item).__name__}")
        total += _text_size(item)
        if total > _budget.size:
            break
    _budget.fits(total, "join")


def _replace_size(text: Any, old: Any, new: Any) -> None:
    text, old, new = str(text), str(old), str(new)
    if len(new) > len(old):
        count = text.count(old) if old else len(text) + 1
        _budget.fits(len(text) + count * (len(new) - len(old)), "replace")


def _arguments(fn, args: tuple, kwargs: dict, names: tuple[str, ...]) -> dict[str, Any]:
    """A filter's arguments by name (after the value), however they were passed."""
    offset = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0
    given = dict(zip(("value", *names), args[offset:], strict=False))
    given.update(kwargs)
    return given


def _before_filter(name: str, fn, args: tuple, kwargs: dict) -> tuple:
    """Size checks that must run before a filter that could build a big value; returns the args to use."""
    if name == "join":
        a = _arguments(fn, args, kwargs, ("d", "attribute"))
        value = a.get("value")
        if not isinstance(value, list | tuple | str):  # e.g. map's generator: read it once, here
            offset = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0
            value = list(value)
            args = (*args[:offset], value, *args[offset + 1 :])
        if a.get("attribute") is None:
            _join_size(value, a.get("d", ""))
    elif name == "replace":
        a = _arguments(fn, args, kwargs, ("old", "new", "count"))
        _replace_size(a.get("value"), a.get("old", ""), a.get("new", ""))
    elif name == "format":
        a = _arguments(fn, args, kwargs, ())
        offset = 1 + (1 if getattr(fn, "jinja_pass_arg", None) is not None else 0)
        _percent_format_size(a.get("value"), kwargs or tuple(args[offset:]))
    elif name in {"center", "indent", "truncate"}:
        a = _arguments(fn, args, kwargs, ("width",) if name != "truncate" else ("length",))
        width = a.get("width", a.get("length", 0))
        _check_width(name, width)
        if name == "indent" and isinstance(a.get("value"), str):
            text = a["value"]
            _budget.fits(len(text) + _text_size(width) * (text.count("\n") + 1), "indent")
    elif name in {"batch", "slice"}:
        a = _arguments(fn, args, kwargs, ("linecount", "fill_with") if name == "batch" else ("slices", "fill_with"))
        count = a.get("linecount", a.get("slices", 1))
        _check_width(name, count)
        if a.get("fill_with") is not None and isinstance(count, int):
            _budget.fits(content_size(a["fill_with"], _budget.size) * abs(count), name)
    elif name == "sum":
        a = _arguments(fn, args, kwargs, ("attribute", "start"))
        if not isinstance(a.get("start", 0), int | float):
            raise ExpressionLimit("sum adds numbers: give it no start, or a number")
    return args


def _bounded_filter(name: str, fn):
    @functools.wraps(fn)
    def bounded(*args, **kwargs):
        _budget.tick()
        args = _before_filter(name, fn, args, kwargs)
        return _budget.spend(fn(*args, **kwargs), name)

    return bounded


def _sum_checked(left: Any, right: Any) -> Any:
    if isinstance(left, str | list | tuple | bytes) and isinstance(right, str | list | tuple | bytes):
        _budget.fits(content_size(left, _budget.size) + content_size(right, _budget.size), "+")
    return operator.add(left, right)


def _times_checked(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple | bytes) and isinstance(count, int) and not isinstance(count, bool):
            _budget.fits(content_size(seq, _budget.size) * max(count, 0), "*")
    return operator.mul(left, right)


def _power_checked(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        if right * abs(left).bit_length() > POWER_BITS:
            raise ExpressionLimit(f"{left} ** {right} is too big a number")
    return operator.pow(left, right)


def _modulo_checked(left: Any, right: Any) -> Any:
    _percent_format_size(left, right)
    return operator.mod(left, right)


_CHECKED_BINOPS = {"+": _sum_checked, "*": _times_checked, "**": _power_checked, "%": _modulo_checked}


def bounded_range(*args: int) -> range:
    """range() whose length is within the size limit (the sandbox's own cap is 100,000)."""
    numbers = range(*args)
    _budget.fits(len(numbers), "range")
    return numbers


@pass_context
def _secret(context, name: str) -> str:
    """`secret('NAME')`: a reference to the secret signed for this run and step, revealed only when it runs."""
    run = context.get("run") or {}
    try:
        return secrets.reference(str(run.get("id", "")), _budget.step or "", name)
    except ValueError as exc:
        raise ExpressionLimit(str(exc)) from None


class _DataFirstEnvironment(ImmutableSandboxedEnvironment):
    """`x.items` reads the key "items" of a JSON object before the dict method of that name.

    Expressions read JSON data, where a key named items, keys or values is common (the issue's own
    example reads `output.json.items`); Jinja's default would return the bound method instead.

    Every attribute, item, call and operator checks the deadline; only methods that cannot build a
    big value may be called; operators check the size they would make first; what calls and
    operators build counts towards the expression's budget.
    """

    intercepted_binops = frozenset(_CHECKED_BINOPS)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if not callable(value):
            return True
        for kind, allowed in SAFE_METHODS.items():
            if isinstance(obj, kind):
                return attr in allowed
        return not isinstance(obj, NO_METHODS)

    def wrap_str_format(self, value: Any) -> None:
        """str.format and format_map are refused like any other method not in SAFE_METHODS (use |format)."""
        return None

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
        return _budget.spend(_CHECKED_BINOPS[operator_name](left, right), operator_name)

    def call(__self, __context, __obj, *args, **kwargs):
        _budget.tick()
        return _budget.spend(super().call(__context, __obj, *args, **kwargs), getattr(__obj, "__name__", "a call"))


_env = _DataFirstEnvironment(undefined=StrictUndefined, autoescape=False)
_env.filters = {name: _bounded_filter(name, fn) for name, fn in _env.filters.items() if name not in DROPPED_FILTERS}
# lipsum makes text out of nothing; namespace, cycler and joiner serve statements, which are refused.
_env.globals = {"range": bounded_range, "dict": _env.globals["dict"], "secret": _secret}
GLOBAL_NAMES = frozenset(_env.globals)  # always in scope
REMOVED_NAMES = frozenset({"lipsum", "namespace", "cycler", "joiner"})  # in scope before the limits


def has_expression(value: str) -> bool:
    return "{{" in value or "{%" in value


@lru_cache(maxsize=4096)
def _compiled_expression(source: str):
    return _env.compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(source: str):
    _refuse_statements(_env.parse(source))
    return _env.from_string(source)


class StatementError(ExpressionError):
    """`{% … %}` in a definition: refused at save; a stored definition that has one fails when evaluated."""


def _refuse_statements(tree: nodes.Template) -> None:
    """Only `{{ … }}` and text: loops, assignments and macros would escape the size checks."""
    for node in tree.find_all(nodes.Stmt):
        if not isinstance(node, nodes.Output):
            raise StatementError(
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
    except SecurityError as exc:
        raise ExpressionError(f"{value!r}: {exc} {UNSAFE_HINT}") from None
    except TemplateError as exc:
        raise ExpressionError(f"{value!r}: {exc.message or exc}") from None
    except (ExpressionLimit, UnstorableValue) as exc:
        raise ExpressionError(f"{value!r}: {exc}") from None
    except RecursionError:
        raise ExpressionError(f"{value!r}: nested too deeply") from None
    except MemoryError:
        raise ExpressionError(f"{value!r}: ran out of memory") from None
    except Exception as exc:  # an error inside the expression itself, e.g. 1 / 0 or a bad comparison
        raise ExpressionError(f"{value!r}: {exc.__class__.__name__}: {exc}") from None


UNSAFE_HINT = (
    "(expressions call only methods that cannot build big values; "
    "use the filters join, replace, format, center or indent instead)"
)


def _render(template, context: dict[str, Any]) -> str:
    """Render piece by piece, so text around expressions is bounded too."""
    pieces, size = [], 0
    for piece in template.generate(**context):
        size += len(piece)
        _budget.fits(size, "the text")
        _budget.tick()
        pieces.append(piece)
    return "".join(pieces)


def evaluate(value: Any, context: dict[str, Any], *, step: str | None = None) -> Any:
    """Resolve every expression in a JSON value; `step` is the step whose params these are (for secret())."""
    _budget.step = step
    try:
        return _evaluate(value, context)
    finally:
        _budget.step = None


def _evaluate(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return evaluate_string(value, context)
    if isinstance(value, list):
        return [_evaluate(item, context) for item in value]
    if isinstance(value, dict):
        return {key: _evaluate(item, context) for key, item in value.items()}
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
        _refuse_statements(tree)
    except TemplateError as exc:
        raise ExpressionError(f"does not parse: {exc.message or exc}") from None
    except RecursionError:
        raise ExpressionError("is nested too deeply to parse") from None
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
    """Names read as `secret('NAME')`, and what is wrong with the other uses of secret().

    A secret's reference must reach the params as it is: printed, or joined with ~ to text. Passed
    through a filter, sliced or stored under another name, it would go out unrevealed.
    """
    names: set[str] = set()
    problems: list[str] = []
    printed: set[int] = set()
    for output in tree.find_all(nodes.Output):
        stack = list(output.nodes)
        while stack:
            node = stack.pop()
            if isinstance(node, nodes.Concat):
                stack.extend(node.nodes)
            elif _is_secret_call(node):
                printed.add(id(node))
    calls = [call for call in tree.find_all(nodes.Call) if _is_secret_call(call)]
    called = {id(call.node) for call in calls}
    if any(name.name == "secret" and id(name) not in called for name in tree.find_all(nodes.Name)):
        problems.append("secret may only be called, as secret('NAME')")
    for call in calls:
        arg = call.args[0] if len(call.args) == 1 and not call.kwargs and not call.dyn_args else None
        if not isinstance(arg, nodes.Const) or not isinstance(arg.value, str) or not secrets.NAME.match(arg.value):
            problems.append(
                "secret() takes one quoted name of upper-case letters, digits and _, e.g. secret('API_KEY')"
            )
        elif id(call) not in printed:
            problems.append(
                f"secret('{arg.value}') must be printed as it is, or joined to text with ~: "
                "not filtered, sliced or passed to anything"
            )
        else:
            names.add(arg.value)
    return names, problems


def _is_secret_call(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "secret"
