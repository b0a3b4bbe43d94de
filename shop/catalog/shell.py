"""The page shell: ``base.html`` around a page's own blocks, formatted once per process per variant.

Every storefront page extends ``base.html`` (header, navigation, footer: about 2.5 ms of template
work per page, as much as the rest of a product page). Almost all of it is the same for every
request. :func:`shell_render` renders only the page's own blocks (title, description, head, body
class, content) and puts them into a copy of the rendered base held by this process, filling in
the few per-request values (page view id, search query, the signed-in name, CSRF token).

A variant of the base is kept for each combination of what changes its structure (signed in or
not, the cart count, the current top-level category, the navigation's categories, the year, the
script prefix); each variant is rendered once by the template engine itself with markers in
place of the per-request values, so ``base.html`` stays the one source of the markup and the
output is byte for byte what ``render()`` gives (``tests/shop/test_page_shell.py``). A request with
flash messages to show is rendered the ordinary way.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from threading import Lock
from typing import Any
from weakref import WeakKeyDictionary

from django.conf import settings
from django.contrib.messages import get_messages
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.template import engines
from django.template.context import make_context
from django.template.loader_tags import BlockNode, ExtendsNode
from django.test.signals import template_rendered
from django.urls import get_script_prefix
from django.utils import timezone
from django.utils.autoreload import file_changed
from django.utils.html import conditional_escape
from django.utils.text import Truncator

from .context_processors import storefront
from .templatetags.storefront import cart_count
from .web import page_view_id_get

BASE_TEMPLATE = "base.html"
BLOCKS = ("title", "meta_description", "head", "body_class", "content")
USER_NAME_CHARS = 14  # base.html: user.first_name|default:user.username|truncatechars:14
MAX_VARIANTS = 256


def _mark(name: str) -> str:
    # NUL never occurs in rendered markup and survives escaping unchanged
    return f"\x00{name}\x00"


_FIELDS = ("page_view_id", "query", "user_name", "csrf_token", *BLOCKS)


@dataclass(frozen=True, slots=True)
class _Shell:
    """The base split at its markers: ``parts[0] + value(fields[0]) + parts[1] + ...``."""

    parts: tuple[str, ...]
    fields: tuple[str, ...]

    def fill(self, values: dict[str, str]) -> str:
        out = [self.parts[0]]
        for field, part in zip(self.fields, self.parts[1:], strict=True):
            out.append(values[field])
            out.append(part)
        return "".join(out)


class _StubRequest:
    """What base.html's tags read from a request, with markers for the per-request values."""

    def __init__(self, *, cart: int) -> None:
        self.visitor_id = None
        self.cart_count = cart
        self.page_view_id = _mark("page_view_id")


class _StubUser:
    is_authenticated = True
    first_name = ""
    username = _mark("user_name")


class _Anonymous:
    is_authenticated = False


_variants: OrderedDict[tuple, _Shell] = OrderedDict()
_lock = Lock()


def _split(html: str) -> _Shell:
    pieces = html.split("\x00")
    # markers sit at odd positions: text, name, text, name, ..., text
    parts, fields = tuple(pieces[0::2]), tuple(pieces[1::2])
    unknown = set(fields) - set(_FIELDS)
    if unknown:
        raise ValueError(f"base.html rendered unexpected markers: {sorted(unknown)}")
    return _Shell(parts=parts, fields=fields)


def _build(*, signed_in: bool, cart: int, current_slug: str, nav: list[dict[str, str]]) -> _Shell:
    overrides = "".join(f"{{% block {b} %}}{_mark(b)}{{% endblock %}}" for b in BLOCKS)
    template = engines["django"].from_string(f'{{% extends "{BASE_TEMPLATE}" %}}{overrides}')
    context = {
        "request": _StubRequest(cart=cart),
        "user": _StubUser() if signed_in else _Anonymous(),
        "nav_categories": nav,
        "category": {"slug": current_slug},
        "query": _mark("query"),
        "csrf_token": _mark("csrf_token"),
        "messages": (),
    }
    return _split(template.render(context))


def _shell(*, signed_in: bool, cart: int, current_slug: str, nav: list[dict[str, str]]) -> _Shell:
    # {% now "Y" %} in the footer
    year = datetime.now(tz=timezone.get_current_timezone() if settings.USE_TZ else None).year
    if not any(c["slug"] == current_slug for c in nav):
        # only a category in the navigation bar is marked current: every other page shares one variant
        # (otherwise each of hundreds of categories would format its own base once per process)
        current_slug = ""
    key = (signed_in, cart, current_slug, tuple((c["slug"], c["name"]) for c in nav), year, get_script_prefix())
    with _lock:
        shell = _variants.get(key)
        if shell is not None:
            _variants.move_to_end(key)
            return shell
    shell = _build(signed_in=signed_in, cart=cart, current_slug=current_slug, nav=nav)
    with _lock:
        _variants[key] = shell
        while len(_variants) > MAX_VARIANTS:
            _variants.popitem(last=False)
    return shell


def shell_clear() -> None:
    """Forget the held variants (a template changed under the development server)."""
    with _lock:
        _variants.clear()


def _blocks_of(template) -> tuple[dict[str, BlockNode], dict[str, BlockNode]]:
    """The page's own blocks and base.html's, by name (found once per loaded template)."""
    held = _blocks_held.get(template)
    if held is not None:
        return held
    own: dict[str, BlockNode] = {}
    extends = template.nodelist.get_nodes_by_type(ExtendsNode)
    if not extends or extends[0].parent_name.resolve({}) != BASE_TEMPLATE:
        raise ValueError(f"{template.name} does not extend {BASE_TEMPLATE}")
    for node in extends[0].nodelist.get_nodes_by_type(BlockNode):
        own.setdefault(node.name, node)
    base = engines["django"].get_template(BASE_TEMPLATE).template
    defaults = {node.name: node for node in base.nodelist.get_nodes_by_type(BlockNode)}
    _blocks_held[template] = (own, defaults)
    return own, defaults


# keyed by the loaded template: the development server's template reload makes new ones
_blocks_held: WeakKeyDictionary = WeakKeyDictionary()


@receiver(file_changed, dispatch_uid="shop.catalog.shell")
def _template_changed(sender, file_path, **kwargs) -> None:
    if file_path.suffix != ".py":
        shell_clear()


def _current_slug(value: Any) -> str:
    if value is None:
        return ""
    slug = value.get("slug", "") if isinstance(value, dict) else getattr(value, "slug", "")
    return str(slug or "")


def shell_render(request: HttpRequest, template_name: str, context: dict[str, Any]) -> HttpResponse:
    """``render(request, template_name, context)`` for a page extending base.html, with the base held."""
    if len(get_messages(request)):  # counting does not mark them shown
        return render(request, template_name, context)
    template = engines["django"].get_template(template_name).template
    own, defaults = _blocks_of(template)
    ctx = make_context(context, request)
    values: dict[str, str] = {}
    with ctx.render_context.push_state(template), ctx.bind_template(template):
        ctx.template_name = template_name
        for name in BLOCKS:
            node = own.get(name) or defaults.get(name)
            values[name] = node.nodelist.render(ctx) if node is not None else ""
        nav = ctx.get("nav_categories") or storefront(request)["nav_categories"]
        user = getattr(request, "user", None)
        signed_in = bool(user is not None and user.is_authenticated)
        shell = _shell(
            signed_in=signed_in,
            cart=cart_count(ctx),
            current_slug=_current_slug(ctx.get("category")),
            nav=nav,
        )
        if template_rendered.receivers:  # the test client's record of templates and contexts
            template_rendered.send(sender=template, template=template, context=ctx)
    values["page_view_id"] = str(page_view_id_get(request))
    query = context.get("query")
    values["query"] = str(conditional_escape(query)) if query else ""
    if signed_in:
        name = getattr(user, "first_name", "") or getattr(user, "username", "")
        values["user_name"] = str(conditional_escape(Truncator(name).chars(USER_NAME_CHARS)))
        if "csrf_token" in shell.fields:
            values["csrf_token"] = str(conditional_escape(get_token(request)))
    return HttpResponse(shell.fill(values))
