"""Template tags for the admin: where Flower is, for links to it."""

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def flower_url() -> str:
    """CHORDFLOW_FLOWER_URL without its trailing slash (paths are appended); empty when Flower is not linked."""
    return settings.CHORDFLOW_FLOWER_URL.rstrip("/")
