"""Cart, checkout and order confirmation pages (thin: validate, call a service, render)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from shop.catalog.cart_hint import cart_hint_note
from shop.catalog.rails import RailContext, RailRequest, rails_fill
from shop.catalog.web import device_get

from .forms import AddToCartForm, CartRemoveForm, CartUpdateForm, CheckoutForm
from .selectors import cart_summary_get, order_get_for_viewer
from .services import cart_add_item, cart_remove_item, cart_update_item, order_create


def _user(request: HttpRequest):
    return request.user if request.user.is_authenticated else None


@require_GET
def cart_detail(request: HttpRequest) -> HttpResponse:
    summary = cart_summary_get(visitor_id=request.visitor_id)
    request.cart_count = summary.count
    lines = [
        {
            "line": line,
            "update_form": CartUpdateForm(initial={"quantity": line.quantity}, prefix=f"l{line.product.pk}"),
            "remove_form": CartRemoveForm(prefix=f"r{line.product.pk}"),
        }
        for line in summary.lines
    ]
    rails = rails_fill(
        requests=[RailRequest("cart.recommended"), RailRequest("cart.popular")],
        context=RailContext(visitor_id=request.visitor_id, exclude_ids=summary.product_ids),
    )
    return render(request, "orders/cart.html", {"summary": summary, "lines": lines, "rails": rails})


@require_POST
def cart_add(request: HttpRequest) -> HttpResponse:
    form = AddToCartForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Please choose a quantity between 1 and 99.")
        pid = request.POST.get("product_id", "")
        # isdigit() alone is true for "²", which int() refuses
        if pid.isascii() and pid.isdigit():
            return redirect(reverse("catalog:product_by_id", kwargs={"pk": int(pid)}))
        return redirect("orders:cart")
    data = form.cleaned_data
    try:
        change = cart_add_item(
            visitor_id=request.visitor_id,
            user=_user(request),
            product_id=data["product_id"],
            quantity=data["quantity"],
            nonce=data["nonce"],
            placement=data["placement"],
            position=data["position"],
            page_view_id=data["page_view_id"],
            device=device_get(request),
        )
    except ValidationError as exc:
        for msg in exc.messages:
            messages.error(request, msg)
        return redirect("catalog:product_by_id", pk=data["product_id"])
    cart_hint_note(request, lines=1)
    if change.changed and change.item is not None:
        messages.success(request, f"Added {data['quantity']} × {change.item.product.name} to your cart.")
    return redirect("orders:cart")


@require_POST
def cart_update(request: HttpRequest, product_id: int) -> HttpResponse:
    form = CartUpdateForm(request.POST, prefix=f"l{product_id}")
    if not form.is_valid():
        messages.error(request, "Please enter a quantity between 0 and 99.")
        return redirect("orders:cart")
    try:
        cart_update_item(
            visitor_id=request.visitor_id,
            user=_user(request),
            product_id=product_id,
            quantity=form.cleaned_data["quantity"],
            nonce=form.cleaned_data["nonce"],
            device=device_get(request),
        )
    except ValidationError as exc:
        for msg in exc.messages:
            messages.error(request, msg)
    return redirect("orders:cart")


@require_POST
def cart_remove(request: HttpRequest, product_id: int) -> HttpResponse:
    form = CartRemoveForm(request.POST, prefix=f"r{product_id}")
    if not form.is_valid():
        return redirect("orders:cart")
    change = cart_remove_item(
        visitor_id=request.visitor_id,
        user=_user(request),
        product_id=product_id,
        nonce=form.cleaned_data["nonce"],
        device=device_get(request),
    )
    if change.changed:
        messages.info(request, "Removed from your cart.")
    return redirect("orders:cart")


@require_http_methods(["GET", "POST"])
def checkout(request: HttpRequest) -> HttpResponse:
    summary = cart_summary_get(visitor_id=request.visitor_id)
    request.cart_count = summary.count
    if summary.is_empty:
        messages.info(request, "Your cart is empty. Add something before checking out.")
        return redirect("orders:cart")
    if request.method == "POST":
        form = CheckoutForm(request.POST)
        if form.is_valid():
            try:
                order = order_create(
                    visitor_id=request.visitor_id,
                    user=_user(request),
                    full_name=form.cleaned_data["full_name"],
                    email=form.cleaned_data["email"],
                    address=form.address_text(),
                    device=device_get(request),
                )
            except ValidationError as exc:
                for msg in exc.messages:
                    messages.error(request, msg)
                if getattr(exc, "code", None) == "empty_cart":
                    return redirect("orders:cart")
                summary = cart_summary_get(visitor_id=request.visitor_id)
            else:
                return redirect(order.get_absolute_url())
        else:
            messages.error(request, "Please correct the highlighted fields.")
    else:
        initial = {}
        if request.user.is_authenticated:
            initial = {"email": request.user.email, "full_name": request.user.get_full_name()}
        form = CheckoutForm(initial=initial)
    return render(request, "orders/checkout.html", {"form": form, "summary": summary})


@require_GET
def order_confirmation(request: HttpRequest, number: str) -> HttpResponse:
    order = order_get_for_viewer(number=number, visitor_id=request.visitor_id, user=request.user)
    if order is None:
        raise Http404("No such order")
    return render(request, "orders/confirmation.html", {"order": order, "lines": list(order.lines.all())})
