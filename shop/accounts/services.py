"""What logging in and out does to the browser's visitor, its history, orders and cart."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from shop.events.models import Visitor
from shop.events.services import visitor_attach_user
from shop.orders.services import cart_merge_for_user, order_claim_for_user


@transaction.atomic
def user_login_visitor(*, visitor_id: uuid.UUID, user: AbstractBaseUser) -> uuid.UUID:
    """The visitor this browser continues as once ``user`` has logged in.

    A guest visitor (no user yet) becomes the user's: its events and guest orders join their
    history. A visitor that already belongs to another account (a shared browser whose previous
    user's session ended without logging out) is left to that account and the browser gets a new
    visitor. Either way the lines of the user's other carts are merged into this browser's cart.
    """
    visitor, _ = Visitor.objects.select_for_update().get_or_create(id=visitor_id)
    if visitor.user_id is None:
        visitor_attach_user(visitor=visitor, user=user)
        order_claim_for_user(visitor_id=visitor.pk, user=user)
    elif visitor.user_id != user.pk:
        visitor = Visitor.objects.create(id=uuid.uuid4(), user=user)
    cart_merge_for_user(visitor_id=visitor.pk, user=user)
    return visitor.pk
