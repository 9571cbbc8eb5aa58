"""Writes for workflow definitions: saving makes a new version only when the definition changed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction

from workflows.definition import parse_definition
from workflows.exceptions import DefinitionError, Problem
from workflows.models import Workflow, WorkflowVersion
from workflows.spec import WorkflowSpec

_spec_cache: dict[tuple[int, str], WorkflowSpec] = {}


def definition_hash(definition: Any) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def version_spec(version: WorkflowVersion) -> WorkflowSpec:
    """The parsed spec of a version; versions never change, so each process parses one only once.

    Keyed by the content hash too: SQLite may hand a deleted version's id to a new one.
    """
    key = (version.pk, version.content_hash)
    spec = _spec_cache.get(key)
    if spec is None:
        spec = _spec_cache[key] = parse_definition(version.definition, stored=True)
    return spec


def version_spec_by_id(version_id: int, content_hash: str) -> WorkflowSpec:
    """The same cache as version_spec, without loading the definition unless this process has not parsed it."""
    spec = _spec_cache.get((version_id, content_hash))
    if spec is None:
        spec = version_spec(WorkflowVersion.objects.get(pk=version_id))
    return spec


def workflow_save(*, slug: str, definition: Any, created_by=None) -> tuple[Workflow, WorkflowVersion, bool]:
    """Validate and store `definition` under `slug`: (workflow, its current version, whether it is new).

    Raises DefinitionError, listing every problem, and stores nothing, when the definition is invalid.
    """
    try:
        validate_slug(slug)
    except ValidationError:
        raise DefinitionError([Problem("slug", "must be letters, digits, - and _ only")]) from None
    spec = parse_definition(definition)
    content_hash = definition_hash(definition)
    for _ in range(3):  # two saves of one new slug at once: the loser retries and finds the winner
        try:
            with transaction.atomic():
                workflow, _created = Workflow.objects.select_for_update().get_or_create(
                    slug=slug, defaults={"name": spec.name, "description": spec.description}
                )
                latest = workflow.versions.order_by("-number").first()
                if latest is not None and latest.content_hash == content_hash:
                    return workflow, latest, False
                workflow.name, workflow.description = spec.name, spec.description
                workflow.save(update_fields=["name", "description", "updated_at"])
                version = WorkflowVersion.objects.create(
                    workflow=workflow,
                    number=(latest.number + 1) if latest else 1,
                    definition=definition,
                    content_hash=content_hash,
                    created_by=created_by,
                )
                return workflow, version, True
        except IntegrityError:
            continue
    raise RuntimeError(f"could not save workflow {slug!r}: concurrent saves kept conflicting")
