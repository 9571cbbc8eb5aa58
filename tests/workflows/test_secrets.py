"""Secret references: revealed only where the step's params call secret(), redacted in every form."""

import urllib.parse

import pytest

from workflows import secrets
from workflows.definition import parse_definition
from workflows.exceptions import DefinitionError, PermanentError

VALUE = "s3cr+t/Key=="


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("CHORDFLOW_SECRET_K", VALUE)


def reveal(value, template, step="post"):
    revealed: dict[str, str] = {}
    return secrets.reveal(value, template=template, run_id="r1", step_id=step, allowed={"K"}, revealed=revealed)


def test_a_reference_is_revealed_where_the_params_call_secret_and_nowhere_else(key):
    ref = secrets.reference("r1", "post", "K")
    template = {"headers": {"Authorization": "Bearer {{ secret('K') }}"}, "body": "{{ input.comment }}"}
    value = {"headers": {"Authorization": f"Bearer {ref}"}, "body": f"copied: {ref}"}
    assert reveal(value, template) == {"headers": {"Authorization": f"Bearer {VALUE}"}, "body": f"copied: {ref}"}


def test_a_reference_signed_for_another_step_or_run_is_not_revealed(key):
    template = {"auth": "{{ secret('K') }}"}
    for ref in (secrets.reference("r1", "fetch", "K"), secrets.reference("r2", "post", "K")):
        assert reveal({"auth": ref}, template) == {"auth": ref}


def test_a_secret_value_with_a_control_character_is_refused(monkeypatch):
    monkeypatch.setenv("CHORDFLOW_SECRET_K", "line\nbreak")
    with pytest.raises(PermanentError, match="line break or another control character"):
        reveal({"a": secrets.reference("r1", "post", "K")}, {"a": "{{ secret('K') }}"})


@pytest.mark.parametrize(
    "form",
    [VALUE, urllib.parse.quote(VALUE, safe=""), urllib.parse.quote_plus(VALUE), repr("é" + VALUE)[2:-1]],
)
def test_redaction_finds_the_value_as_it_is_and_escaped(form):
    redacted = secrets.redact({"error": f"GET /x?key={form} answered 404", "t": (form,)}, {"K": VALUE})
    assert VALUE not in repr(redacted) and form not in repr(redacted)
    assert "⟪secret:K⟫" in redacted["error"] and redacted["t"] == ["⟪secret:K⟫"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": "{{ secret('K')|upper }}"}, "must be printed as it is"),
        ({"k": "{{ secret('K')[1:] }}"}, "must be printed as it is"),
        ({"k": "{{ [secret][0]('K') }}"}, "secret may only be called"),
        ({"k": "{{ ('x' ~ secret('K'))|urlencode }}"}, "must be printed as it is"),
    ],
)
def test_a_reference_that_would_be_transformed_or_aliased_is_refused_at_save(params, message):
    with pytest.raises(DefinitionError, match=message):
        parse_definition({"name": "s", "steps": [{"id": "s", "action": "echo", "params": params}]})


def test_a_reference_printed_or_joined_to_text_is_accepted():
    spec = parse_definition(
        {
            "name": "s",
            "steps": [
                {
                    "id": "s",
                    "action": "echo",
                    "params": {"a": "Bearer {{ secret('K') }}", "b": "{{ 'Token ' ~ secret('T') ~ '!' }}"},
                }
            ],
        }
    )
    assert spec.steps[0].secrets == frozenset({"K", "T"})
