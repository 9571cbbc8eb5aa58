"""What one author can cost: bounded expressions, storable values, definition limits, YAML aliases."""

import io

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from workflows.definition import parse_definition, validate_input
from workflows.exceptions import DefinitionError, ExpressionError, InputValidationError
from workflows.expressions import evaluate
from workflows.models import Workflow
from workflows.yaml_load import load_definition

CONTEXT = {"input": {"items": [1, 2, 3], "word": "ab"}, "steps": {}, "run": {"id": "r"}}


def problems(definition) -> dict[str, str]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(definition)
    return {p.path: p.message for p in caught.value.problems}


def chain(count: int, **step) -> dict:
    return {
        "name": "chain",
        "steps": [
            {"id": f"s{i}", "action": "echo", **({"depends_on": [f"s{i - 1}"]} if i else {}), **step}
            for i in range(count)
        ],
    }


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("{{ 'a' * 10**8 }}", "over CHORDFLOW_MAX_EXPRESSION_SIZE"),
        ("{{ input.items * 10**7 }}", "over CHORDFLOW_MAX_EXPRESSION_SIZE"),
        ("{{ range(10**7) }}", "over CHORDFLOW_MAX_EXPRESSION_SIZE"),
        ("{{ 'x'|center(10**9) }}", "over CHORDFLOW_MAX_EXPRESSION_SIZE"),
        ("{{ '%999999999d' % 1 }}", "% would make"),
        ("{{ '%999999999d'|format(1) }}", "% would make"),
        ("{{ '%*s' % (999999999, 'a') }}", "% would make"),
        ("{{ ('%(a)s' * 3000) % {'a': 'a' * 1000000} }}", "% would make"),
        ("{{ ('%(a)s' * 3000)|format(a='a' * 1000000) }}", "% would make"),
        ("{{ ('a' * 1000)|replace('a', 'b' * 10000) }}", "replace would make"),
        ("{{ ('a' * 1000000)|replace(old='a', new='b' * 3000) }}", "replace would make"),
        ("{{ ('1' * 1000000)|replace(1, 'b' * 3000) }}", "replace would make"),
        ("{{ input.items|join('x' * 1000000) }}", "join would make"),
        ("{{ ('a' * 1000000)|join('b' * 3000) }}", "join would make"),
        ("{{ [['a']]|join }}", "join joins strings and numbers, not a list"),
        ("{{ ['a' * 1000000] * 1000 }}", "* would make"),  # references count each time they print
        ("{{ (['a' * 1000000] * 1000)|string }}", "* would make"),
        ("{{ [[[[0] * 300] * 300] * 300] * 300 == [] }}", "* would make"),
        ("{{ range(1000)|map('center', 1000000)|list }}", "built more than"),
        ("{{ 10 ** 100000 }}", "too big a number"),
        ("{{ range(10000)|batch(1)|sum(start=[]) }}", "sum adds numbers"),
        ("{{ (range(1000)|list) * 1000 }}", "* would make"),
        ("{{ (range(1000)|list) * 500 }}", "over the limit of 1.0 MiB"),  # the value, as JSON
        ("{{ lipsum(10**6) }}", "'lipsum' is undefined"),
        ("{{ ('a ' * 500000)|wordwrap(2) }}", "No filter named 'wordwrap'"),
        # methods that can multiply a value in one call are refused; their filters are bounded
        ("{{ 'x'.ljust(10**9) }}", "attribute 'ljust' of 'str' object is unsafe"),
        ("{{ ('b' * 1000).join('a' * 1000000) }}", "attribute 'join' of 'str' object is unsafe"),
        ("{{ ('x' * 1000).expandtabs(1000000) }}", "attribute 'expandtabs' of 'str' object is unsafe"),
        ("{{ ('a' * 1000000).translate({97: 'b' * 3000}) }}", "attribute 'translate' of 'str' object is unsafe"),
        ("{{ '{:>999999999}'.format(1) }}", "attribute 'format' of 'str' object is unsafe"),
        ("{{ (1).to_bytes(1000000, 'big') }}", "attribute 'to_bytes' of 'int' object is unsafe"),
        ("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", "nested too deeply"),
    ],
)
def test_an_expression_that_would_build_a_huge_value_fails_before_it_does(expression, reason):
    with pytest.raises(ExpressionError) as caught:
        evaluate(expression, CONTEXT)
    assert reason in str(caught.value)
    assert expression in str(caught.value)  # names the expression


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("{{ range(3) }}", "not JSON: a range"),
        ("{{ input.keys() }}", "not JSON: a dict_keys"),
        ("{{ 1e308 * 10 }}", "holds inf"),
        ("{{ 2 ** 100 }}", "integer beyond 64 bits"),
        ("{{ '\\x00' }}", "NUL character"),
        ("{{ {'a': range(2)} }}", "not JSON: a range at .a"),
    ],
)
def test_an_expression_whose_value_is_not_storable_json_is_an_expression_error(expression, reason):
    with pytest.raises(ExpressionError) as caught:
        evaluate(expression, CONTEXT)
    assert reason in str(caught.value)


def test_bounded_expressions_still_compute_what_they_should():
    assert evaluate("{{ input.items|map('string')|join(',') }}", CONTEXT) == "1,2,3"
    assert evaluate("{{ range(100000)|list|length }}", CONTEXT) == 100000
    assert evaluate("{{ '%s-%s'|format(input.word, 2) }}", CONTEXT) == "ab-2"
    assert evaluate("{{ input.word * 3 }}", CONTEXT) == "ababab"
    assert evaluate("{{ input.items|sum }}", CONTEXT) == 6
    assert evaluate("x{{ input.word|replace('a', 'c') }}", CONTEXT) == "xcb"
    # numbers in the text of a format string are not widths, and big numbers are fine as data
    assert evaluate("{{ 'order 1234567890123: %s' % input.word }}", CONTEXT) == "order 1234567890123: ab"
    assert evaluate("{{ '%5.1f'|format(3.14159) }}", CONTEXT) == "  3.1"
    assert evaluate("{{ 'order %d'|format(1700000000) }}", CONTEXT) == "order 1700000000"
    assert evaluate("{{ input.missing|default(1700000000) }}", CONTEXT) == 1700000000
    assert evaluate("{{ dict(id=1700000000) }}", CONTEXT) == {"id": 1700000000}
    assert evaluate("{{ range(2000000, 2000002)|list }}", CONTEXT) == [2000000, 2000001]
    assert evaluate("{{ 'A,b'.lower().split(',') }}", CONTEXT) == ["a", "b"]
    assert evaluate("{{ input.items|join(', ') }}", CONTEXT) == "1, 2, 3"


def test_an_expression_past_its_time_fails_with_the_setting_named(settings):
    settings.CHORDFLOW_EXPRESSION_TIMEOUT = 1e-9
    with pytest.raises(ExpressionError, match=r"took longer than .*CHORDFLOW_EXPRESSION_TIMEOUT"):
        evaluate("{{ range(100000)|map('string')|list|length }}", CONTEXT)


def test_a_text_template_is_bounded_as_it_renders(settings):
    settings.CHORDFLOW_MAX_EXPRESSION_SIZE = 10
    with pytest.raises(ExpressionError, match="the text would make"):
        evaluate("0123456789 {{ input.word }}", CONTEXT)


def test_statements_are_refused_at_save_with_their_place():
    found = problems(chain(1, params={"x": "{% for i in range(9) %}{% set x = 1 %}{% endfor %}"}))
    assert "statements ({% for … %}) are not supported" in found["steps[0].params.x"]


def test_an_expression_nested_too_deeply_to_parse_is_a_problem_at_save_not_a_500():
    found = problems(chain(1, params={"x": "{{ " + "1 + " * 3000 + "1 }}"}))
    assert "nested too deeply" in found["steps[0].params.x"]


def test_names_only_statements_needed_are_gone():
    found = problems(chain(1, params={"c": "{{ cycler }}", "l": "{{ lipsum(5) }}"}))
    assert "unknown name 'cycler'" in found["steps[0].params.c"]
    assert "unknown name 'lipsum'" in found["steps[0].params.l"]


def test_more_steps_than_the_limit_are_refused_at_once(settings):
    settings.CHORDFLOW_MAX_STEPS = 5
    assert problems(chain(6)) == {"steps": "has 6 steps, over the limit of 5 (CHORDFLOW_MAX_STEPS)"}
    assert len(parse_definition(chain(5)).steps) == 5


def test_a_definition_nested_deeper_than_the_limit_is_refused_without_recursion_errors():
    params: dict = {}
    inner = params
    for _ in range(900):
        inner["x"] = {}
        inner = inner["x"]
    found = problems(chain(1, params=params))
    assert "nests deeper than 64 levels" in found[""]
    assert "CHORDFLOW_MAX_JSON_DEPTH" in found[""]


def test_an_input_too_deep_or_not_storable_is_an_input_error():
    spec = parse_definition(chain(1))
    deep: list = []
    inner = deep
    for _ in range(100):
        inner.append([])
        inner = inner[0]
    with pytest.raises(InputValidationError, match="nests deeper than 64"):
        validate_input(spec, {"a": deep})
    with pytest.raises(InputValidationError, match=r"lone surrogate at \.name"):
        validate_input(spec, {"name": "\ud800"})


def test_a_long_chain_is_checked_and_planned_without_quadratic_graph_work(settings):
    settings.CHORDFLOW_MAX_STEPS = 10_000
    spec = parse_definition(chain(10_000, params={"prev": "{{ run.id }}"}))
    # every step's neighbourhood is its one dependent (and that one's own dependency): built once
    assert spec.neighbourhood["s0"] == frozenset({"s1", "s0"})
    assert spec.neighbourhood["s9999"] == frozenset()


ALIAS_BOMB = """
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
name: bomb
steps: [{id: s, action: echo, params: *f}]
"""


def test_yaml_nested_too_deeply_is_a_yaml_error_not_a_500():
    with pytest.raises(yaml.YAMLError, match="nested too deeply"):
        load_definition("a: " + "[" * 3000 + "]" * 3000)


def test_yaml_aliases_are_refused_where_definitions_are_read():
    with pytest.raises(Exception, match=r"aliases \(\*a\) are not allowed"):
        load_definition(ALIAS_BOMB)
    assert load_definition("a: &x 1\nb: 2") == {"a": 1, "b": 2}  # an anchor alone is harmless


@pytest.mark.django_db
def test_load_workflows_refuses_an_alias_bomb_and_stores_nothing(tmp_path):
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("load_workflows", str(tmp_path), stderr=err, stdout=io.StringIO())
    assert "aliases (*a) are not allowed" in err.getvalue()
    assert not Workflow.objects.filter(slug="bomb").exists()


@pytest.mark.django_db
def test_the_admin_refuses_an_alias_bomb_and_stores_nothing(admin_client):
    response = admin_client.post(
        "/admin/workflows/workflow/add/", {"slug": "bomb", "active": "on", "definition": ALIAS_BOMB}
    )
    assert response.status_code == 200  # the form again, with the error
    assert "aliases (*a) are not allowed" in response.content.decode()
    assert not Workflow.objects.filter(slug="bomb").exists()


@pytest.mark.django_db
def test_a_version_stored_before_the_limits_still_runs_its_other_steps(settings):
    """A definition saved before statements, removed names and the step limit were refused."""
    from workflows.models import WorkflowVersion
    from workflows.services import version_spec
    from workflows.spec import WorkflowSpec

    workflow = Workflow.objects.create(slug="old", name="old")
    definition = chain(3, params={"x": "{% if true %}1{% endif %}", "c": "{{ cycler }}"})
    version = WorkflowVersion.objects.create(workflow=workflow, number=1, definition=definition, content_hash="h")
    settings.CHORDFLOW_MAX_STEPS = 2
    spec = version_spec(version)
    assert isinstance(spec, WorkflowSpec) and len(spec.steps) == 3
    with pytest.raises(DefinitionError):  # saving it again applies every rule
        parse_definition(definition)
    with pytest.raises(ExpressionError, match="statements"):
        evaluate(definition["steps"][0]["params"], CONTEXT)  # the step fails when it runs, saying why
