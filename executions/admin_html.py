"""HTML pieces the runtime's admin pages share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.utils.html import format_html, format_html_join


def html_table(headers: Sequence[str], rows: Iterable[Sequence], table_id: str = "") -> str:
    """A plain table of escaped cells, for read-only lists on a change page."""
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    cells = "".join("<td>{}</td>" for _ in headers)
    body = format_html_join("", "<tr>" + cells + "</tr>", rows)
    if table_id:
        return format_html('<table id="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', table_id, head, body)
    return format_html("<table><tr>{}</tr>{}</table>", head, body)
