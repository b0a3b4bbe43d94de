"""Cart and checkout API for cookie-jar clients (the shopper simulator) and scripts.

The visitor is the ``vid`` cookie, exactly as on the storefront pages, and the same services run
(they log add_to_cart / remove_from_cart / purchase themselves, so nothing is logged here).
A request that carries the session or ``vid`` cookie sends the CSRF token (cookie ``csrftoken``, header
``X-CSRFToken``), signed in or not (``shop.api.authentication``); one with neither starts a new visitor.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.api.authentication import CookieSessionAuthentication
from shop.api.schema import detail_response, validation_response
from shop.api.throttles import AddressScopedRateThrottle, VisitorScopedRateThrottle
from shop.catalog.cart_hint import cart_hint_note
from shop.catalog.web import device_get

from .selectors import cart_summary_get, order_get_for_viewer
from .serializers import (
    CartItemAddSerializer,
    CartItemRemoveParamsSerializer,
    CartItemUpdateSerializer,
    CartSerializer,
    CheckoutSerializer,
    OrderSerializer,
)
from .services import cart_add_item, cart_remove_item, cart_update_item, order_create

# Which request field a service's refusal is about (by its ValidationError code).
_FIELD_BY_CODE = {
    "quantity": "quantity",
    "insufficient_stock": "quantity",
    "unknown_product": "product_id",
    "unavailable": "product_id",
    "out_of_stock": "product_id",
}


def _user(request: Request):
    return request.user if request.user.is_authenticated else None


def _refusal(exc: DjangoValidationError, *, default_field: str) -> APIException:
    if getattr(exc, "code", None) == "not_in_cart":
        return NotFound(exc.messages[0])
    field = _FIELD_BY_CODE.get(getattr(exc, "code", None) or "", default_field)
    return serializers.ValidationError({field: exc.messages})


def _cart_response(request: Request, *, status_code: int = status.HTTP_200_OK) -> Response:
    summary = cart_summary_get(visitor_id=request.visitor_id)
    cart_hint_note(request, lines=summary.count)
    return Response(CartSerializer(summary).data, status=status_code)


def _valid(serializer_class: type[serializers.Serializer], data) -> dict:
    s = serializer_class(data=data)
    s.is_valid(raise_exception=True)
    return s.validated_data


class _CartApi(APIView):
    authentication_classes = [CookieSessionAuthentication]
    permission_classes = [AllowAny]
    # per visitor, and per address whatever the cookies say (a fresh visitor per request gets no fresh bucket)
    throttle_classes = [VisitorScopedRateThrottle, AddressScopedRateThrottle]
    throttle_scope = "cart"


_THROTTLED = detail_response("Throttled (scope `cart`, per visitor or address).")


class CartApi(_CartApi):
    @extend_schema(operation_id="cart_retrieve", responses={200: CartSerializer, 429: _THROTTLED}, summary="The cart")
    def get(self, request: Request) -> Response:
        return _cart_response(request)


class CartItemListApi(_CartApi):
    @extend_schema(
        operation_id="cart_items_create",
        request=CartItemAddSerializer,
        responses={
            201: CartSerializer,
            200: CartSerializer,
            400: validation_response(
                "Bad quantity, unknown or unavailable product, not enough stock.", name="CartError"
            ),
            429: _THROTTLED,
        },
        summary="Add a product (201; 200 when the nonce was already used and nothing changed)",
    )
    def post(self, request: Request) -> Response:
        data = _valid(CartItemAddSerializer, request.data)
        try:
            change = cart_add_item(
                visitor_id=request.visitor_id,
                user=_user(request),
                product_id=data["product_id"],
                quantity=data["quantity"],
                nonce=data.get("nonce") or None,
                placement=data["placement"],
                position=data["position"],
                page_view_id=data["page_view_id"],
                device=device_get(request),
            )
        except DjangoValidationError as exc:
            raise _refusal(exc, default_field="product_id") from exc
        return _cart_response(request, status_code=status.HTTP_201_CREATED if change.changed else status.HTTP_200_OK)


class CartItemDetailApi(_CartApi):
    @extend_schema(
        operation_id="cart_items_update",
        request=CartItemUpdateSerializer,
        responses={
            200: CartSerializer,
            400: validation_response("Bad quantity or not enough stock.", name="CartUpdateError"),
            404: detail_response("That product is not in the cart."),
            429: _THROTTLED,
        },
        summary="Set the quantity of a line (0 removes it)",
    )
    def patch(self, request: Request, product_id: int) -> Response:
        data = _valid(CartItemUpdateSerializer, request.data)
        try:
            cart_update_item(
                visitor_id=request.visitor_id,
                user=_user(request),
                product_id=product_id,
                quantity=data["quantity"],
                nonce=data.get("nonce") or None,
                device=device_get(request),
            )
        except DjangoValidationError as exc:
            raise _refusal(exc, default_field="quantity") from exc
        return _cart_response(request)

    @extend_schema(
        operation_id="cart_items_destroy",
        parameters=[CartItemRemoveParamsSerializer],
        responses={200: CartSerializer, 429: _THROTTLED},
        summary="Remove a line (removing what is not in the cart changes nothing)",
    )
    def delete(self, request: Request, product_id: int) -> Response:
        params = _valid(CartItemRemoveParamsSerializer, request.query_params.dict())
        cart_remove_item(
            visitor_id=request.visitor_id,
            user=_user(request),
            product_id=product_id,
            nonce=params.get("nonce") or None,
            device=device_get(request),
        )
        return _cart_response(request)


class CheckoutApi(_CartApi):
    @extend_schema(
        operation_id="checkout_create",
        request=CheckoutSerializer,
        responses={
            201: OrderSerializer,
            400: validation_response(
                'Missing or bad fields, or {"cart": [...]} when the cart is empty or a line cannot be filled.',
                name="CheckoutError",
            ),
            429: _THROTTLED,
        },
        summary="Place an order for the whole cart (demo: no payment)",
    )
    def post(self, request: Request) -> Response:
        data = _valid(CheckoutSerializer, request.data)
        try:
            order = order_create(
                visitor_id=request.visitor_id,
                user=_user(request),
                full_name=data["full_name"],
                email=data["email"],
                address=data["address"],
                device=device_get(request),
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"cart": exc.messages}) from exc
        order = order_get_for_viewer(number=order.number, visitor_id=request.visitor_id, user=request.user)
        return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)
