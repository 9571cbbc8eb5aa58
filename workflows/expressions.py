"""`{{ expressions }}` in definitions, evaluated by Jinja2's immutable sandbox: no eval, no internals.

A string that is exactly one `{{ … }}` yields the expression's native value (list, dict, number,
bool, null); a string with text around expressions renders to a string. Values are walked
recursively, so params may be any JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workflows.exceptions import ExpressionError

SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


class _DataFirstEnvironment(ImmutableSandboxedEnvironment):
    """`x.items` reads the key "items" of a JSON object before the dict method of that name.

    Expressions read JSON data, where a key named items, keys or values is common (the issue's own
    example reads `output.json.items`); Jinja's default would return the bound method instead.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_env = _DataFirstEnvironment(undefined=StrictUndefined, autoescape=False)
GLOBAL_NAMES = frozenset(_env.globals)  # range, dict, namespace, …: always in scope


def has_expression(value: str) -> bool:
    return "{{" in value or "{%" in value


@lru_cache(maxsize=4096)
def _compiled_expression(source: str):
    return _env.compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(source: str):
    return _env.from_string(source)


def evaluate_string(value: str, context: dict[str, Any]) -> Any:
    if not has_expression(value):
        return value
    try:
        match = SINGLE_EXPRESSION.match(value)
        if match:
            result = _compiled_expression(match.group("expr").strip())(**context)
            if isinstance(result, Undefined):
                str(result)  # StrictUndefined raises here, with the name that is missing
            return result
        return _compiled_template(value).render(**context)
    except TemplateError as exc:
        raise ExpressionError(f"{value!r}: {exc.message or exc}") from None
    except Exception as exc:  # an error inside the expression itself, e.g. 1 / 0 or a bad comparison
        raise ExpressionError(f"{value!r}: {exc.__class__.__name__}: {exc}") from None


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
        return _env.parse(f"{{{{ {match.group('expr')} }}}}" if match else value)
    except TemplateError as exc:
        raise ExpressionError(f"does not parse: {exc.message or exc}") from None


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
