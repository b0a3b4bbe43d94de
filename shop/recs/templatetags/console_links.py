"""``{% console_url %}``: where the merchant console runs (``CONSOLE_URL``), for the admin's links."""

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def console_url() -> str:
    return settings.CONSOLE_URL
