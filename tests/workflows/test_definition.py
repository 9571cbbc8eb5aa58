"""Definition validation: every problem at once, each with where and what."""

import pytest

from workflows.definition import parse_definition
from workflows.exceptions import DefinitionError
from workflows.spec import RetryPolicy


def problems(definition) -> dict[str, str]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(definition)
    return {p.path: p.message for p in caught.value.problems}


def test_a_valid_definition_becomes_a_spec_with_defaults_applied():
    spec = parse_definition(
        {
            "name": "Orders",
            "defaults": {"retry": {"max_attempts": 5}, "timeout": 60, "queue": "io"},
            "steps": [
                {"id": "fetch", "action": "http", "params": {"url": "https://x/{{ input.id }}"}, "timeout": 30},
                {
                    "id": "price",
                    "action": "echo",
                    "depends_on": ["fetch"],
                    "for_each": "{{ steps.fetch.output.json.items }}",
                },
            ],
        }
    )
    fetch, price = spec.steps
    assert fetch.timeout == 30 and price.timeout == 60
    assert fetch.retry == RetryPolicy(max_attempts=5) and fetch.queue == "io"
    assert price.depends_on == ("fetch",)


def test_every_problem_is_reported_at_once_with_its_place():
    found = problems(
        {
            "name": "",
            "colour": "blue",
            "steps": [
                {"id": "a", "action": "echo", "depends_on": ["c"]},
                {
                    "id": "b",
                    "action": "nope",
                    "depends_on": ["a", "ghost"],
                    "retry": {"max_attempts": 0, "backoff": -1},
                },
                {"id": "c", "action": "echo", "depends_on": ["b"], "timeout": 0, "unknown": 1},
                {"id": "a", "action": "echo"},
                {"id": "Bad-Id", "action": "echo", "on_failure": "explode"},
            ],
        }
    )
    assert found["name"] == "is required: a non-empty string"
    assert found["colour"].startswith("unknown key")
    assert found["steps[1].action"].startswith("unknown action 'nope'")
    assert found["steps[1].depends_on[1]"] == "unknown step id 'ghost'"
    assert found["steps[1].retry.max_attempts"].startswith("must be a whole number")
    assert found["steps[1].retry.backoff"] == "must be a number of seconds >= 0"
    assert found["steps[2].timeout"].startswith("must be a number of seconds above 0")
    assert found["steps[2].unknown"].startswith("unknown key")
    assert found["steps[3].id"] == "duplicate id 'a' (first at steps[0])"
    assert found["steps[4].id"].startswith("is required: lowercase letters")
    assert found["steps[4].on_failure"] == "must be one of: fail_run, continue, escalate"
    cycle = next(message for message in found.values() if message.startswith("dependency cycle"))
    assert cycle in (
        "dependency cycle: a -> c -> b -> a",
        "dependency cycle: c -> b -> a -> c",
        "dependency cycle: b -> a -> c -> b",
    )


def test_expressions_must_parse_and_read_only_ancestors_and_known_names():
    found = problems(
        {
            "name": "x",
            "steps": [
                {"id": "a", "action": "echo", "params": {"x": "{{ steps.b.output }}"}},
                {"id": "b", "action": "echo", "params": {"y": "{{ input.x + }}"}, "when": "{{ secrets }}"},
                {"id": "c", "action": "echo", "params": {"i": "{{ item }}"}, "depends_on": ["a"]},
                {"id": "d", "action": "echo", "for_each": "input.items"},
            ],
            "output": "{{ steps.zzz.output }}",
        }
    )
    assert found["steps[0].params.x"].startswith("reads steps.b, which is not a step this one depends on")
    assert found["steps[1].params.y"].startswith("does not parse")
    assert found["steps[1].when"].startswith("unknown name 'secrets'")
    assert found["steps[2].params.i"].startswith("unknown name 'item'")  # only inside for_each
    assert found["steps[3].for_each"].startswith("must be an expression giving a list")
    assert found["output"].startswith("reads steps.zzz")


def test_an_invalid_input_schema_is_refused():
    found = problems({"name": "x", "steps": [{"id": "a", "action": "echo"}], "input_schema": {"type": "banana"}})
    assert "input_schema.type" in found or "input_schema" in found


@pytest.mark.parametrize("definition", [None, [], "steps", {"name": "x"}, {"name": "x", "steps": []}])
def test_shapes_that_are_not_definitions_are_refused(definition):
    with pytest.raises(DefinitionError):
        parse_definition(definition)


def test_retry_delays_follow_the_policy():
    policy = RetryPolicy(max_attempts=5, backoff=1.0, backoff_max=5, jitter=False)
    assert [policy.delay(k) for k in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5]
    jittered = RetryPolicy(backoff=2.0, backoff_max=60, jitter=True)
    assert all(0 <= jittered.delay(3) <= 8.0 for _ in range(200))


SCHEMA = {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}


def test_an_example_input_must_fit_the_input_schema_and_says_where_it_does_not():
    wf = {"name": "x", "steps": [{"id": "a", "action": "echo"}], "input_schema": SCHEMA}
    assert problems({**wf, "example_input": {"order_id": 7}}) == {"example_input.order_id": "7 is not of type 'string'"}
    assert "example_input" in problems({**wf, "example_input": {}})
    parse_definition({**wf, "example_input": {"order_id": "A-1"}})
    parse_definition({"name": "x", "steps": [{"id": "a", "action": "echo"}], "example_input": [1, "any JSON"]})


def test_the_shipped_examples_carry_an_example_input_that_fits():
    from pathlib import Path

    import yaml

    for path in sorted(Path("workflows/examples").glob("*.yaml")):
        definition = yaml.safe_load(path.read_text())
        definition.pop("schedules", None)
        assert "example_input" in definition, path
        parse_definition(definition)
