"""Load YAML (or JSON) definitions without aliases: 413 bytes of nested aliases can mean 10⁶ values."""

from __future__ import annotations

from typing import Any

import yaml


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing `*alias` references (anchors alone are harmless)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            message = f"aliases (*{event.anchor}) are not allowed in definitions: write the value out"
            raise yaml.composer.ComposerError(None, None, message, event.start_mark)
        return super().compose_node(parent, index)


def load_definition(text: str) -> Any:
    """The value of a YAML or JSON document; yaml.YAMLError when it does not parse or uses an alias."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise yaml.YAMLError("the document is nested too deeply") from None
