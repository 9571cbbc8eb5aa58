"""Sections a workflow file may carry beside its definition (`schedules:`), each handled by the app
that owns it: apps register a handler from AppConfig.ready(), so workflows imports none of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workflows.models import Workflow

# handler(workflow, value) -> lines to report; raises a ProblemsError (paths relative to the section)
SectionHandler = Callable[[Workflow, Any], list[str]]
_sections: dict[str, SectionHandler] = {}


def register_section(name: str, handler: SectionHandler) -> None:
    _sections[name] = handler


def split(document: Any) -> tuple[Any, dict[str, Any]]:
    """(the definition, {section: value}) of a file's document; a non-object is left to the validator."""
    if not isinstance(document, dict):
        return document, {}
    sections = {name: document[name] for name in _sections if name in document}
    return {k: v for k, v in document.items() if k not in sections}, sections


def handler(name: str) -> SectionHandler:
    return _sections[name]
