"""Expressions: native values for a lone expression, strings otherwise, and a sandbox that holds."""

import pytest

from workflows.exceptions import ExpressionError
from workflows.expressions import evaluate

CONTEXT = {"input": {"total": 1500, "items": [1, 2], "id": "123", "tags": {"a": 1}}, "steps": {}, "run": {"id": "r"}}


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("{{ input.total > 1000 }}", True),
        ("{{ input.items }}", [1, 2]),
        ("{{ input.id }}", "123"),  # a string stays a string
        ("{{ input.tags }}", {"a": 1}),
        ("{{ none }}", None),
        ("  {{ input.total / 2 }}  ", 750.0),
        ("order {{ input.id }}", "order 123"),
        ("{{ input.id }}-{{ input.total }}", "123-1500"),
        ("no expression", "no expression"),
    ],
)
def test_values(expression, value):
    assert evaluate(expression, CONTEXT) == value


def test_params_are_walked_recursively():
    assert evaluate({"a": ["{{ input.total }}", {"b": "x{{ input.id }}"}], "n": 3}, CONTEXT) == {
        "a": [1500, {"b": "x123"}],
        "n": 3,
    }


@pytest.mark.parametrize(
    "expression",
    [
        "{{ input.__class__ }}",
        "{{ ().__class__.__bases__[0].__subclasses__() }}",
        "{{ input.items.append(3) }}",
        "{{ input.missing }}",
        "{{ 1 / 0 }}",
    ],
)
def test_the_sandbox_and_strictness_refuse_with_an_expression_error(expression):
    with pytest.raises(ExpressionError):
        evaluate(expression, CONTEXT)
