"""Cart and checkout. Every function is atomic and takes plain ids, so the storefront views and
the cart API call the same code.

Concurrency: each cart mutation first locks the visitor's cart row (``SELECT ... FOR UPDATE``),
so two submits of the same form are serialised and the second sees the first's event key.
Checkout also locks the products it sells, in id order, so stock never goes below zero.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from shop.catalog.models import Product
from shop.catalog.stock import sold_out_note
from shop.events.models import Event, EventType
from shop.events.services import event_record, events_record, visitor_get_or_create, web_event_in

from .models import Cart, CartItem, Order, OrderLine

MAX_LINE_QUANTITY = 99
ORDER_NUMBER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


@dataclass(frozen=True, slots=True)
class CartChange:
    item: CartItem | None
    changed: bool  # False when the nonce was already used (a replayed form)
    missing: bool = False  # the line was not in the cart, and not because this nonce removed it


def _user_or_none(user: AbstractBaseUser | None) -> AbstractBaseUser | None:
    return user if user is not None and user.is_authenticated else None


def _nonce_key(prefix: str, nonce: str | uuid.UUID | None) -> str:
    nonce = str(nonce) if nonce else str(uuid.uuid4())
    return f"{prefix}:{nonce}"[:100]


def _check_quantity(quantity: int) -> None:
    if quantity < 1:
        raise ValidationError("Quantity must be at least 1.", code="quantity")
    if quantity > MAX_LINE_QUANTITY:
        raise ValidationError(f"You can buy at most {MAX_LINE_QUANTITY} of one product.", code="quantity")


def _check_stock(product: Product, wanted: int) -> None:
    if not product.is_active:
        raise ValidationError(f"{product.name} is no longer available.", code="unavailable")
    if product.stock <= 0:
        raise ValidationError(f"Sorry, {product.name} is out of stock.", code="out_of_stock")
    if wanted > product.stock:
        raise ValidationError(f"Only {product.stock} of {product.name} left in stock.", code="insufficient_stock")


def cart_get_or_create(*, visitor_id: uuid.UUID, user: AbstractBaseUser | None = None, lock: bool = False) -> Cart:
    """The visitor's cart (created on first use). ``lock`` holds its row until the transaction ends."""
    visitor = visitor_get_or_create(visitor_id=visitor_id, user=_user_or_none(user))
    cart, _ = Cart.objects.get_or_create(visitor=visitor)
    if lock:
        cart = Cart.objects.select_for_update().get(pk=cart.pk)
    return cart


@transaction.atomic
def cart_add_item(
    *,
    visitor_id: uuid.UUID,
    user: AbstractBaseUser | None,
    product_id: int,
    quantity: int = 1,
    nonce: str | uuid.UUID | None = None,
    placement: str = "",
    position: int | None = None,
    page_view_id: uuid.UUID | None = None,
    device: str = "",
) -> CartChange:
    """Add ``quantity`` of a product and log ``add_to_cart`` (key ``add:{nonce}``).

    A replayed nonce changes nothing and logs nothing. Raises ValidationError when the product is
    unavailable or the cart would hold more than is in stock.
    """
    _check_quantity(quantity)
    key = _nonce_key("add", nonce)
    cart = cart_get_or_create(visitor_id=visitor_id, user=user, lock=True)
    item = CartItem.objects.filter(cart=cart, product_id=product_id).first()
    if Event.objects.filter(visitor_id=visitor_id, idempotency_key=key).exists():
        return CartChange(item=item, changed=False)
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise ValidationError("That product does not exist.", code="unknown_product")
    current = item.quantity if item else 0
    _check_stock(product, current + quantity)
    _check_quantity(current + quantity)
    if item is None:
        item = CartItem.objects.create(cart=cart, product=product, quantity=quantity)
    else:
        item.quantity = current + quantity
        item.save(update_fields=["quantity"])
    Cart.objects.filter(pk=cart.pk).update(updated_at=timezone.now())
    event_record(
        visitor_id=visitor_id,
        user=_user_or_none(user),
        type=EventType.ADD_TO_CART,
        product_id=product_id,
        idempotency_key=key,
        placement=placement,
        position=position,
        page_view_id=page_view_id,
        quantity=quantity,
        device=device,
    )
    return CartChange(item=item, changed=True)


@transaction.atomic
def cart_update_item(
    *,
    visitor_id: uuid.UUID,
    user: AbstractBaseUser | None,
    product_id: int,
    quantity: int,
    nonce: str | uuid.UUID | None = None,
    device: str = "",
) -> CartChange:
    """Set a line's quantity (0 removes it). An increase logs ``add_to_cart`` (``add:{nonce}``),
    a decrease ``remove_from_cart`` (``rm:{nonce}``), each with the difference as quantity. A line not in the
    cart is refused (``not_in_cart``) whatever the quantity, unless this nonce is what removed it (a retry)."""
    if quantity <= 0:
        change = cart_remove_item(visitor_id=visitor_id, user=user, product_id=product_id, nonce=nonce, device=device)
        if change.missing:
            raise ValidationError("That product is not in your cart.", code="not_in_cart")
        return change
    _check_quantity(quantity)
    nonce = str(nonce) if nonce else str(uuid.uuid4())
    add_key, rm_key = _nonce_key("add", nonce), _nonce_key("rm", nonce)
    cart = cart_get_or_create(visitor_id=visitor_id, user=user, lock=True)
    item = CartItem.objects.select_related("product").filter(cart=cart, product_id=product_id).first()
    if item is None:
        raise ValidationError("That product is not in your cart.", code="not_in_cart")
    if Event.objects.filter(visitor_id=visitor_id, idempotency_key__in=[add_key, rm_key]).exists():
        return CartChange(item=item, changed=False)
    delta = quantity - item.quantity
    if delta == 0:
        return CartChange(item=item, changed=False)
    if delta > 0:
        _check_stock(item.product, quantity)
    item.quantity = quantity
    item.save(update_fields=["quantity"])
    event_record(
        visitor_id=visitor_id,
        user=_user_or_none(user),
        type=EventType.ADD_TO_CART if delta > 0 else EventType.REMOVE_FROM_CART,
        product_id=product_id,
        idempotency_key=add_key if delta > 0 else rm_key,
        placement="cart",
        quantity=abs(delta),
        device=device,
    )
    return CartChange(item=item, changed=True)


@transaction.atomic
def cart_remove_item(
    *,
    visitor_id: uuid.UUID,
    user: AbstractBaseUser | None,
    product_id: int,
    nonce: str | uuid.UUID | None = None,
    device: str = "",
) -> CartChange:
    """Remove a line and log ``remove_from_cart`` (``rm:{nonce}``) with the quantity removed.
    Removing what is not in the cart (e.g. a replayed form) is a no-op (``missing`` says whether it was this
    nonce's own removal or never there)."""
    key = _nonce_key("rm", nonce)
    cart = cart_get_or_create(visitor_id=visitor_id, user=user, lock=True)
    item = CartItem.objects.filter(cart=cart, product_id=product_id).first()
    replayed = Event.objects.filter(visitor_id=visitor_id, idempotency_key=key).exists()
    if item is None or replayed:
        return CartChange(item=None, changed=False, missing=item is None and not replayed)
    removed = item.quantity
    item.delete()
    event_record(
        visitor_id=visitor_id,
        user=_user_or_none(user),
        type=EventType.REMOVE_FROM_CART,
        product_id=product_id,
        idempotency_key=key,
        placement="cart",
        quantity=removed,
        device=device,
    )
    return CartChange(item=None, changed=True)


@transaction.atomic
def cart_merge_for_user(*, visitor_id: uuid.UUID, user: AbstractBaseUser) -> int:
    """At log in: move the lines of ``user``'s other carts (other browsers, earlier sessions) into
    this browser's cart, the way a shop merges a guest basket into the customer's saved one.

    Quantities of the same product add up (capped at ``MAX_LINE_QUANTITY``; stock is checked at
    checkout, where a short line is shown with its problem). Returns how many lines moved.
    """
    cart = cart_get_or_create(visitor_id=visitor_id, user=user, lock=True)
    others = list(
        CartItem.objects.select_for_update()
        .filter(cart__visitor__user_id=user.pk)
        .exclude(cart_id=cart.pk)
        .order_by("added_at", "id")
    )
    if not others:
        return 0
    mine = {i.product_id: i for i in CartItem.objects.filter(cart=cart)}
    for item in others:
        current = mine.get(item.product_id)
        if current is None:
            mine[item.product_id] = CartItem.objects.create(
                cart=cart, product_id=item.product_id, quantity=min(item.quantity, MAX_LINE_QUANTITY)
            )
        else:
            current.quantity = min(current.quantity + item.quantity, MAX_LINE_QUANTITY)
            current.save(update_fields=["quantity"])
    CartItem.objects.filter(pk__in=[i.pk for i in others]).delete()
    Cart.objects.filter(pk=cart.pk).update(updated_at=timezone.now())
    return len(others)


def order_claim_for_user(*, visitor_id: uuid.UUID, user: AbstractBaseUser) -> int:
    """Orders this (anonymous, now signed-in) browser placed as a guest join ``user``'s history."""
    return Order.objects.filter(visitor_id=visitor_id, user__isnull=True).update(user=user)


def order_number_new() -> str:
    """Like ``K7QX-93HF-2MPL``: unguessable, easy to read out on the phone."""
    raw = "".join(secrets.choice(ORDER_NUMBER_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


@transaction.atomic
def order_create(
    *,
    visitor_id: uuid.UUID,
    user: AbstractBaseUser | None,
    full_name: str,
    email: str,
    address: str,
    device: str = "",
) -> Order:
    """Turn the visitor's cart into an order (demo: no payment).

    In one transaction: check every line against locked stock, create the order and its lines,
    decrement stock, log one ``purchase`` per line (``buy:{order_number}:{product_id}``) and
    empty the cart. Raises ValidationError (nothing written) for an empty cart or a line that
    cannot be filled; its messages name the products.
    """
    user = _user_or_none(user)
    cart = cart_get_or_create(visitor_id=visitor_id, user=user, lock=True)
    items = list(CartItem.objects.filter(cart=cart).order_by("added_at", "id"))
    if not items:
        raise ValidationError("Your cart is empty.", code="empty_cart")
    locked = Product.objects.select_for_update().filter(pk__in=[i.product_id for i in items]).order_by("pk")
    products = {p.pk: p for p in locked}

    problems: list[str] = []
    for item in items:
        product = products.get(item.product_id)
        if product is None or not product.is_active:
            problems.append(f"{product.name if product else 'A product'} is no longer available.")
        elif product.stock <= 0:
            problems.append(f"{product.name} is out of stock.")
        elif item.quantity > product.stock:
            problems.append(f"Only {product.stock} of {product.name} left in stock (your cart has {item.quantity}).")
    if problems:
        raise ValidationError(problems, code="stock")

    total = sum((products[i.product_id].price * i.quantity for i in items), Decimal("0"))
    order = Order.objects.create(
        number=order_number_new(),
        visitor_id=cart.visitor_id,
        user=user,
        email=email,
        full_name=full_name,
        address=address,
        total=total,
        placed_at=timezone.now(),
    )
    OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=order, product_id=i.product_id, quantity=i.quantity, unit_price=products[i.product_id].price
            )
            for i in items
        ]
    )
    for item in items:
        products[item.product_id].stock -= item.quantity
    Product.objects.bulk_update(list(products.values()), ["stock"])
    sold_out = [pk for pk, product in products.items() if product.stock <= 0]
    if sold_out:  # this process's rails leave them out at once; other processes within SOLD_OUT_TTL_S
        transaction.on_commit(lambda: sold_out_note(sold_out))
    events_record(
        visitor_id=visitor_id,
        user=user,
        events=[
            web_event_in(  # with the visitor's arm and the serving model, as every server-side event
                visitor_id=visitor_id,
                type=EventType.PURCHASE,
                product_id=i.product_id,
                idempotency_key=f"buy:{order.number}:{i.product_id}",
                placement="checkout",
                quantity=i.quantity,
                order_id=order.pk,
                occurred_at=order.placed_at,
                device=device,
            )
            for i in items
        ],
    )
    CartItem.objects.filter(cart=cart).delete()
    return order
