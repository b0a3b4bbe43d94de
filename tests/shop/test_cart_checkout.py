"""Cart and checkout as a shopper does them, and the events they leave behind."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from shop.events.middleware import visitor_id_from_cookie
from shop.events.models import Event, EventType
from shop.orders.models import CartItem, Order
from shop.orders.services import cart_add_item, cart_remove_item, cart_update_item, order_create
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

CHECKOUT = {
    "full_name": "Ada Lovelace",
    "email": "ada@example.com",
    "address_line": "12 St James's Square",
    "postal_code": "SW1Y 4JH",
    "city": "London",
    "country": "United Kingdom",
}


def add(client: Client, product, quantity: int = 1, nonce: str | None = None, **extra):
    data = {"product_id": product.pk, "quantity": quantity, "nonce": nonce or str(uuid.uuid4()), **extra}
    return client.post("/cart/add/", data, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def visitor_of(client: Client) -> uuid.UUID:
    return visitor_id_from_cookie(client.cookies["vid"].value)


# ---------- cart ----------


def test_added_product_shows_in_cart(client):
    product = ProductFactory(name="Wildflower Honey", price=Decimal("7.25"))

    response = add(client, product, quantity=2)

    html = response.content.decode()
    assert response.redirect_chain[-1][0] == "/cart/"
    assert "Wildflower Honey" in html
    assert 'value="2"' in html
    assert "$14.50" in html
    assert "data-cart-count>2</span>" in html
    assert "Added 2 × Wildflower Honey to your cart." in messages_of(response)


@pytest.mark.parametrize("signed_in", [False, True])
def test_the_header_badge_counts_the_cart_on_every_page(client, django_user_model, signed_in):
    """The badge read the ``vid`` cookie as a bare uuid; once the cookie was signed, every page but the
    cart showed an empty cart."""
    if signed_in:
        client.force_login(django_user_model.objects.create_user("badge", password="pw-123456789"))
    product = ProductFactory(stock=10)
    add(client, product, quantity=2)
    add(client, ProductFactory(category=product.category, stock=10))
    for path in ("/", product.get_absolute_url(), f"/c/{product.category.slug}/", "/search/?q=x", "/cart/"):
        html = client.get(path).content.decode()
        assert "data-cart-count>3</span>" in html, path
    fresh = Client()  # no cookie yet: a new visitor, no query for a cart it cannot have
    assert 'is-empty" data-cart-count>0</span>' in fresh.get("/").content.decode()


def test_add_to_cart_is_logged_with_its_attribution(client):
    product = ProductFactory()
    pvid = uuid.uuid4()
    nonce = str(uuid.uuid4())

    add(client, product, nonce=nonce, placement="product.popular", position=4, page_view_id=str(pvid))

    event = Event.objects.get(type=EventType.ADD_TO_CART)
    assert event.idempotency_key == f"add:{nonce}"
    assert (event.placement, event.position, event.page_view_id) == ("product.popular", 4, pvid)
    assert event.visitor_id == visitor_of(client)


def test_replayed_nonce_neither_double_adds_nor_double_logs(client):
    product = ProductFactory()
    nonce = str(uuid.uuid4())

    add(client, product, nonce=nonce)
    add(client, product, nonce=nonce)  # a double-click or a resubmitted page

    assert CartItem.objects.get().quantity == 1
    assert Event.objects.filter(type=EventType.ADD_TO_CART).count() == 1
    add(client, product)  # a new form (new nonce) does add again
    assert CartItem.objects.get().quantity == 2


def test_cannot_add_more_than_is_in_stock(client):
    product = ProductFactory(name="Saffron Threads", stock=2)

    response = add(client, product, quantity=3)

    assert "Only 2 of Saffron Threads left in stock." in messages_of(response)
    assert not CartItem.objects.exists()
    assert not Event.objects.filter(type=EventType.ADD_TO_CART).exists()


def test_adding_a_bad_quantity_explains_itself(client):
    product = ProductFactory()
    response = add(client, product, quantity=0)
    assert "Please choose a quantity between 1 and 99." in messages_of(response)
    assert not CartItem.objects.exists()


def test_update_quantity_logs_the_difference(client):
    product = ProductFactory(stock=10)
    add(client, product, quantity=1)
    nonce = str(uuid.uuid4())

    client.post(f"/cart/items/{product.pk}/", {f"l{product.pk}-quantity": 4, f"l{product.pk}-nonce": nonce})
    client.post(f"/cart/items/{product.pk}/", {f"l{product.pk}-quantity": 4, f"l{product.pk}-nonce": nonce})
    client.post(f"/cart/items/{product.pk}/", {f"l{product.pk}-quantity": 3, f"l{product.pk}-nonce": str(uuid.uuid4())})

    assert CartItem.objects.get().quantity == 3
    adds = Event.objects.filter(type=EventType.ADD_TO_CART).order_by("id")
    assert [e.quantity for e in adds] == [1, 3]
    assert Event.objects.get(type=EventType.REMOVE_FROM_CART).quantity == 1


def test_remove_from_cart_is_logged_once(client):
    product = ProductFactory(name="Rose Hip Tea")
    add(client, product, quantity=2)
    nonce = str(uuid.uuid4())

    response = client.post(f"/cart/items/{product.pk}/remove/", {f"r{product.pk}-nonce": nonce}, follow=True)
    client.post(f"/cart/items/{product.pk}/remove/", {f"r{product.pk}-nonce": nonce})

    assert "Your cart is empty" in response.content.decode()
    removal = Event.objects.get(type=EventType.REMOVE_FROM_CART)
    assert (removal.idempotency_key, removal.quantity) == (f"rm:{nonce}", 2)


def test_cart_actions_need_post(client):
    assert client.get("/cart/add/").status_code == 405


# ---------- checkout ----------


def test_checkout_places_the_order(client):
    honey = ProductFactory(name="Honey", price=Decimal("5.00"), stock=10)
    oats = ProductFactory(name="Oats", price=Decimal("3.20"), stock=4)
    add(client, honey, quantity=2)
    add(client, oats, quantity=4)

    page = client.get("/checkout/")
    response = client.post("/checkout/", CHECKOUT, follow=True)

    assert page.status_code == 200 and "Place order · $22.80" in page.content.decode()
    order = Order.objects.get()
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/orders/{order.number}/"
    assert order.number in html and "Thank you, Ada Lovelace!" in html
    assert order.total == Decimal("22.80")
    assert order.visitor_id == visitor_of(client)
    assert "SW1Y 4JH London" in order.address
    assert sorted((line.product_id, line.quantity) for line in order.lines.all()) == sorted(
        [(honey.pk, 2), (oats.pk, 4)]
    )
    honey.refresh_from_db()
    oats.refresh_from_db()
    assert (honey.stock, oats.stock) == (8, 0)
    purchases = Event.objects.filter(type=EventType.PURCHASE)
    assert sorted(purchases.values_list("idempotency_key", "quantity", "order_id")) == sorted(
        [(f"buy:{order.number}:{honey.pk}", 2, order.pk), (f"buy:{order.number}:{oats.pk}", 4, order.pk)]
    )
    assert not CartItem.objects.exists()
    assert "data-cart-count>0</span>" in html


def test_resubmitted_checkout_places_one_order(client):
    add(client, ProductFactory(), quantity=1)
    client.post("/checkout/", CHECKOUT)

    again = client.post("/checkout/", CHECKOUT, follow=True)

    assert Order.objects.count() == 1
    assert Event.objects.filter(type=EventType.PURCHASE).count() == 1
    assert "Your cart is empty. Add something before checking out." in messages_of(again)


def test_checkout_refuses_an_empty_cart(client):
    response = client.get("/checkout/", follow=True)
    assert response.redirect_chain[-1][0] == "/cart/"
    assert "Your cart is empty. Add something before checking out." in messages_of(response)
    client.post("/checkout/", CHECKOUT)
    assert not Order.objects.exists()


def test_checkout_refuses_quantities_no_longer_in_stock(client):
    product = ProductFactory(name="Matcha Powder", stock=5)
    add(client, product, quantity=3)
    product.stock = 2  # someone else bought some meanwhile
    product.save()

    response = client.post("/checkout/", CHECKOUT)

    assert response.status_code == 200
    assert "Only 2 of Matcha Powder left in stock (your cart has 3)." in messages_of(response)
    assert "Only 2 left in stock" in response.content.decode()  # the line is flagged too
    assert not Order.objects.exists()
    assert not Event.objects.filter(type=EventType.PURCHASE).exists()
    product.refresh_from_db()
    assert product.stock == 2


def test_checkout_form_errors_are_shown_next_to_the_fields(client):
    add(client, ProductFactory())

    response = client.post("/checkout/", {**CHECKOUT, "email": "not-an-email", "city": ""})

    html = response.content.decode()
    assert "Enter a valid email address." in html
    assert "This field is required." in html
    assert "Please correct the highlighted fields." in messages_of(response)
    assert not Order.objects.exists()


def test_confirmation_is_private_to_who_placed_the_order(client):
    add(client, ProductFactory())
    client.post("/checkout/", CHECKOUT)
    order = Order.objects.get()

    assert client.get(f"/orders/{order.number}/").status_code == 200
    assert Client().get(f"/orders/{order.number}/").status_code == 404
    assert client.get("/orders/NOPE-NOPE-NOPE/").status_code == 404


# ---------- services without a request (what the cart API calls) ----------


def test_services_work_with_plain_ids():
    visitor_id = uuid.uuid4()
    a = ProductFactory(price=Decimal("2.00"), stock=3)
    b = ProductFactory(price=Decimal("1.50"), stock=3)

    cart_add_item(visitor_id=visitor_id, user=None, product_id=a.pk, quantity=2, nonce="n1")
    cart_add_item(visitor_id=visitor_id, user=None, product_id=b.pk, quantity=1, nonce="n2")
    cart_update_item(visitor_id=visitor_id, user=None, product_id=a.pk, quantity=3, nonce="n3")
    cart_remove_item(visitor_id=visitor_id, user=None, product_id=b.pk, nonce="n4")
    order = order_create(visitor_id=visitor_id, user=None, full_name="A B", email="a@b.co", address="x")

    assert order.total == Decimal("6.00")
    assert list(Event.objects.order_by("id").values_list("type", "quantity")) == [
        (EventType.ADD_TO_CART, 2),
        (EventType.ADD_TO_CART, 1),
        (EventType.ADD_TO_CART, 1),
        (EventType.REMOVE_FROM_CART, 1),
        (EventType.PURCHASE, 3),
    ]


def test_order_create_writes_nothing_when_a_line_cannot_be_filled():
    visitor_id = uuid.uuid4()
    ok = ProductFactory(stock=5)
    gone = ProductFactory(stock=1, name="Last Jar")
    cart_add_item(visitor_id=visitor_id, user=None, product_id=ok.pk, quantity=2)
    cart_add_item(visitor_id=visitor_id, user=None, product_id=gone.pk, quantity=1)
    gone.stock = 0
    gone.save()

    with pytest.raises(ValidationError) as exc:
        order_create(visitor_id=visitor_id, user=None, full_name="A B", email="a@b.co", address="x")

    assert exc.value.messages == ["Last Jar is out of stock."]
    ok.refresh_from_db()
    assert ok.stock == 5
    assert CartItem.objects.count() == 2
    assert not Order.objects.exists()
