"""Storefront pages: home, category, search, product detail, product image, and rails fetched after load."""

from __future__ import annotations

import hashlib
import uuid

from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

from shop.events.models import EventType
from shop.events.services import web_event_in

from .cart_hint import cart_may_have_lines
from .images import product_svg
from .models import Product
from .product_page import buy_box_html, product_page_get
from .rails import PLACEMENTS, RAIL_EXCLUDE_MAX, RailContext, RailRequest, context_for_category, rails_html
from .selectors import (
    DEFAULT_SORT,
    SEARCH_SORTS,
    SORTS,
    category_node_get,
    category_product_ids,
    category_tree_get,
    search_product_ids,
    search_suggestions,
)
from .shell import shell_render
from .templatetags.storefront import grid_markup, route
from .web import attribution_get, device_get, is_prefetch, page_view_id_get, whole_number

PER_PAGE = 24
IMAGE_SIZES = (200, 400, 800)
IMAGE_MAX_AGE = 60 * 60 * 24 * 7
IMAGE_VERSION = "1"  # bump when images.py draws differently, so cached copies are refetched


def _paging(page) -> dict:
    return {
        "page": page,
        "page_range": list(page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
    }


def _grid(page, placement: str) -> str:
    """The page's product cards (``page`` holds product ids); the first card's position is the number
    of products on earlier pages."""
    return grid_markup(ids=list(page.object_list), placement=placement, offset=page.start_index() - 1)


def _rail_base(request: HttpRequest) -> RailContext:
    user = request.user
    return RailContext(
        visitor_id=request.visitor_id,
        user_id=user.pk if user.is_authenticated else None,
        page_view_id=page_view_id_get(request),
        device=device_get(request),
        no_cart=not cart_may_have_lines(request),
    )


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    rails = rails_html(
        requests=["home.recommended", "home.trending", "home.popular", "home.new_arrivals"],
        context=_rail_base(request),
    )
    return shell_render(request, "catalog/home.html", {"rails": rails})


@require_safe
def category_detail(request: HttpRequest, slug: str) -> HttpResponse:
    node, tree = category_node_get(slug=slug)
    sort = request.GET.get("sort", DEFAULT_SORT)
    sort = sort if sort in SORTS else DEFAULT_SORT
    ids = category_product_ids(category_id=node.id, category_ids=tree.descendant_ids(node.id), sort=sort)
    page = Paginator(ids, PER_PAGE).get_page(request.GET.get("page"))
    context = context_for_category(base=_rail_base(request), tree=tree, category_id=node.id)
    rails = rails_html(requests=["category.popular", "category.new_arrivals"], context=context)
    return shell_render(
        request,
        "catalog/category.html",
        {
            "category": node,
            "breadcrumbs": tree.ancestors(node.id)[:-1],
            "subcategories": tree.children_of(node.id),
            "siblings": tree.children_of(node.parent_id) if node.parent_id else [],
            **_paging(page),
            "grid": _grid(page, "category.grid"),
            "sort": sort,
            "sorts": SORTS,
            "rails": rails,
        },
    )


@require_safe
def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    sort = request.GET.get("sort", "relevance")
    sort = sort if sort in SEARCH_SORTS else "relevance"
    page = None
    if query:
        ids = search_product_ids(query=query, sort=sort)
        page = Paginator(ids, PER_PAGE).get_page(request.GET.get("page"))
    rails = []
    if page is None or page.paginator.count == 0:
        rails = rails_html(requests=["search.popular"], context=_rail_base(request))
    return shell_render(
        request,
        "catalog/search.html",
        {
            "query": query,
            **(_paging(page) if page is not None else {"page": None}),
            "grid": _grid(page, "search.results") if page is not None else "",
            "sort": sort,
            "sorts": SEARCH_SORTS,
            "rails": rails,
        },
    )


SUGGEST_LIMIT = 8
SUGGEST_TTL = 60
SUGGEST_MAX_QUERY = 200


@require_safe
def search_suggest(request: HttpRequest) -> JsonResponse:
    """``GET /search/suggest/?q=``: suggestions for the search box, as JSON. Public and read-only: only
    what the search page itself shows anyone (active products' names and links, category names),
    cached per query for everyone (nothing per visitor)."""
    raw = request.GET.get("q", "")
    if len(raw) > SUGGEST_MAX_QUERY:
        return JsonResponse({"errors": {"q": [f"At most {SUGGEST_MAX_QUERY} characters."]}}, status=400)
    query = " ".join(raw.split())
    suggestions: list[dict[str, str]] = []
    if len(query) >= 2:
        key = "search:suggest:" + hashlib.blake2b(query.lower().encode(), digest_size=16).hexdigest()
        suggestions = cache.get(key)
        if suggestions is None:
            suggestions = search_suggestions(query=query, limit=SUGGEST_LIMIT)
            cache.set(key, suggestions, SUGGEST_TTL)
    response = JsonResponse({"query": query, "suggestions": suggestions})
    patch_cache_control(response, private=True, max_age=SUGGEST_TTL)
    return response


@require_safe
def product_by_id(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product.objects.only("pk", "slug"), pk=pk)
    return _canonical_redirect(request, pk=product.pk, slug=product.slug)


def _canonical_redirect(request: HttpRequest, *, pk: int, slug: str) -> HttpResponse:
    url = reverse("catalog:product", kwargs={"pk": pk, "slug": slug})
    if request.META.get("QUERY_STRING"):
        url += "?" + request.META["QUERY_STRING"]
    return redirect(url)


@require_safe
def product_detail(request: HttpRequest, pk: int, slug: str) -> HttpResponse:
    tree = category_tree_get()
    page = product_page_get(pk=pk, tree=tree)  # the product part, held per process (no query when held)
    if slug != page.slug:
        return _canonical_redirect(request, pk=page.pk, slug=page.slug)
    page_view_id = page_view_id_get(request)
    placement, position = attribution_get(request.GET)
    view = None
    if request.method == "GET" and not is_prefetch(request):
        view = web_event_in(
            visitor_id=request.visitor_id,
            type=EventType.VIEW,
            product_id=page.pk,
            idempotency_key=f"view:{page_view_id}",
            placement=placement,
            position=position,
            page_view_id=page_view_id,
            device=device_get(request),
        )

    base = RailContext(
        visitor_id=request.visitor_id,
        user_id=request.user.pk if request.user.is_authenticated else None,
        product_id=page.pk,
        page_view_id=page_view_id,
        device=device_get(request),
        no_cart=not cart_may_have_lines(request),
    )
    leaf = context_for_category(base=base, tree=tree, category_id=page.category_id)
    node = tree.get(page.category_id)
    wider_id = node.parent_id if node is not None and node.parent_id is not None else page.category_id
    wider = context_for_category(base=base, tree=tree, category_id=wider_id)
    rails = rails_html(
        requests=[
            RailRequest("product.recommended", base),
            RailRequest("product.more_from_category", leaf),
            RailRequest("product.popular", wider),
            RailRequest("product.new_arrivals", base),
        ],
        context=base,
        # the view and the rails' impressions in one statement, committed before the page is answered
        with_events=[view] if view is not None else (),
        user=request.user,
    )
    buy_box = buy_box_html(
        page,
        action=route("orders:cart_add"),
        csrf_token=get_token(request),
        nonce=str(uuid.uuid4()),
        placement="" if placement == "direct" else placement,
        position=position,
        page_view_id=str(page_view_id),
    )
    return shell_render(
        request,
        "catalog/product_detail.html",
        {"page": page, "product_html": page.html(buy_box), "rails": rails},
    )


@require_safe
def product_image(request: HttpRequest, pk: int) -> HttpResponse:
    """A locally drawn SVG for the product; cacheable (ETag + max-age), it changes only with its inputs."""
    row = get_object_or_404(Product.objects.values_list("name", "category__name", "image_seed"), pk=pk)
    name, category, seed = row
    try:
        size = int(request.GET.get("s", 400))
    except ValueError:
        size = 400
    size = size if size in IMAGE_SIZES else 400
    digest = hashlib.sha256(f"{IMAGE_VERSION}|{name}|{category}|{seed}|{size}".encode()).hexdigest()[:32]
    etag = f'"{digest}"'
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(
            product_svg(name=name, category=category, seed=seed, size=size), content_type="image/svg+xml"
        )
    response["ETag"] = etag
    patch_cache_control(response, public=True, max_age=IMAGE_MAX_AGE)
    return response


_ID_MAX = 2**31 - 1  # product ids are PostgreSQL integers


def _rail_params(params) -> tuple[dict, dict[str, list[str]]]:
    """``product``, ``pv`` and ``exclude`` of a rail fetched after load, and the errors naming each bad one."""
    out: dict = {"product": None, "pv": None, "exclude": frozenset()}
    errors: dict[str, list[str]] = {}
    raw = params.get("product")
    if raw is not None:
        out["product"] = whole_number(raw, hi=_ID_MAX)
        if out["product"] is None:
            errors["product"] = ["A product id (a whole number from 1)."]
    raw = params.get("pv")
    if raw is not None:
        try:
            out["pv"] = uuid.UUID(raw)
        except ValueError:
            errors["pv"] = ["The page view id of the page (a UUID)."]
    raw = params.get("exclude")
    if raw:
        ids = [whole_number(p, hi=_ID_MAX) for p in raw.split(",")]
        if len(ids) > RAIL_EXCLUDE_MAX or None in ids:
            errors["exclude"] = [f"At most {RAIL_EXCLUDE_MAX} product ids, separated by commas."]
        else:
            out["exclude"] = frozenset(ids)
    return out, errors  # a repeated parameter is refused before (shop.api.middleware)


@require_safe
def rail_after_load(request: HttpRequest, placement: str) -> HttpResponse:
    """One rail of a page, fetched by the browser once the page has loaded (``RAILS_AFTER_LOAD``): the markup
    of its ``<section>``, or 204 when the rail would be empty. For the visitor of the request's own cookie
    only (no visitor id is taken from the query); its impressions are recorded here, keyed by the page view
    the page gave it, as the page would have recorded them. Costs what rendering the rail in the page did."""
    if placement not in settings.RAILS_AFTER_LOAD or placement not in PLACEMENTS:
        raise Http404("No such rail.")
    params, errors = _rail_params(request.GET)
    if errors:
        return JsonResponse(errors, status=400)
    user = request.user
    context = RailContext(
        visitor_id=request.visitor_id,
        user_id=user.pk if user.is_authenticated else None,
        product_id=params["product"],
        page_view_id=params["pv"] or page_view_id_get(request),
        device=device_get(request),
        exclude_ids=params["exclude"],
        after_load=True,
        no_cart=not cart_may_have_lines(request),
    )
    rails = rails_html(requests=[placement], context=context, user=user, after_load=())
    response = (
        HttpResponse(rails[0].html, content_type="text/html; charset=utf-8") if rails else HttpResponse(status=204)
    )
    patch_cache_control(response, private=True, no_store=True)  # this visitor's, and it records impressions
    return response
