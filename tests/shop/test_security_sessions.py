"""Hole 1: a shared browser must not hand one account's orders, cart or history to another."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from shop.events.middleware import visitor_cookie_value, visitor_id_from_cookie
from shop.events.models import Event, Visitor
from shop.orders.models import CartItem, Order
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db

CHECKOUT = {
    "full_name": "Ada Lovelace",
    "email": "ada@example.com",
    "address_line": "12 St James's Square",
    "postal_code": "SW1Y 4JH",
    "city": "London",
    "country": "United Kingdom",
}


def _sign_up(client: Client, name: str) -> None:
    response = client.post(
        "/accounts/signup/",
        {
            "username": name,
            "email": f"{name}@example.com",
            "password1": f"long-{name}-passphrase-42",
            "password2": f"long-{name}-passphrase-42",
        },
    )
    assert response.status_code == 302, response.content


def _visitor(client: Client) -> uuid.UUID:
    vid = visitor_id_from_cookie(client.cookies["vid"].value)
    assert vid is not None
    return vid


def test_second_account_on_a_shared_browser_does_not_see_the_first_accounts_orders(client):
    product = ProductFactory(name="Oolong Tea")
    _sign_up(client, "alice")
    client.post("/cart/add/", {"product_id": product.pk, "quantity": 1, "nonce": str(uuid.uuid4())})
    client.post("/checkout/", CHECKOUT)
    order = Order.objects.get()
    alice_visitor = _visitor(client)
    client.post("/accounts/logout/")

    _sign_up(client, "bob")
    html = client.get("/accounts/").content.decode()

    assert order.number not in html and "Oolong Tea" not in html
    assert _visitor(client) != alice_visitor
    assert client.get(f"/orders/{order.number}/").status_code == 404
    assert Visitor.objects.get(pk=alice_visitor).user.username == "alice"


def test_logging_in_does_not_take_over_a_visitor_that_belongs_to_someone_else(client):
    alice = UserFactory(username="alice", password="pw-alice-123")
    UserFactory(username="bob", password="pw-bob-123")
    client.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    shared = _visitor(client)
    client.cookies.pop("sessionid")  # session expired, the browser's visitor cookie remains

    client.post("/accounts/login/", {"username": "bob", "password": "pw-bob-123"})

    assert Visitor.objects.get(pk=shared).user == alice
    assert _visitor(client) != shared
    assert Visitor.objects.get(pk=_visitor(client)).user.username == "bob"


def test_logout_issues_a_new_visitor(client):
    UserFactory(username="ada", password="pw-ada-123")
    client.post("/accounts/login/", {"username": "ada", "password": "pw-ada-123"})
    before = _visitor(client)
    client.post("/accounts/logout/")
    assert _visitor(client) != before


def test_visitor_cookie_is_signed_and_http_only(client):
    response = client.get("/")
    morsel = response.cookies["vid"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert visitor_id_from_cookie(morsel.value) is not None
    # a forged or unsigned id is not believed: the browser gets a new visitor instead
    victim = uuid.uuid4()
    forged = Client()
    forged.cookies["vid"] = str(victim)
    response = forged.get("/")
    assert visitor_id_from_cookie(response.cookies["vid"].value) != victim


def test_a_signed_cookie_is_kept(client):
    vid = uuid.uuid4()
    client.cookies["vid"] = visitor_cookie_value(vid)
    response = client.get("/")
    assert "vid" not in response.cookies  # nothing to re-issue
    assert _visitor(client) == vid


def test_the_visitor_cookie_follows_a_rotated_secret_key(settings):
    """The cookie's signer is built once per process and key: a new key signs new cookies, an old key
    listed in SECRET_KEY_FALLBACKS is still believed, and one dropped from them is not."""
    vid = uuid.uuid4()
    old_cookie = visitor_cookie_value(vid)
    assert visitor_id_from_cookie(old_cookie) == vid
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "rotated-" + old_key
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert visitor_cookie_value(vid) != old_cookie
    assert visitor_id_from_cookie(old_cookie) == vid
    settings.SECRET_KEY_FALLBACKS = []
    assert visitor_id_from_cookie(old_cookie) is None
    assert visitor_id_from_cookie(visitor_cookie_value(vid)) == vid


def test_the_anonymous_cart_comes_with_you_on_login_and_merges_with_your_saved_cart(client):
    user = UserFactory(username="kay", password="pw-kay-123")
    saved, fresh = ProductFactory(name="Saved"), ProductFactory(name="Fresh")
    # an earlier session on another device left something in kay's cart
    other_device = Client()
    other_device.post("/accounts/login/", {"username": "kay", "password": "pw-kay-123"})
    other_device.post("/cart/add/", {"product_id": saved.pk, "quantity": 2, "nonce": str(uuid.uuid4())})

    client.post("/cart/add/", {"product_id": fresh.pk, "quantity": 1, "nonce": str(uuid.uuid4())})
    client.post("/accounts/login/", {"username": "kay", "password": "pw-kay-123"})

    html = client.get("/cart/").content.decode()
    assert "Saved" in html and "Fresh" in html
    items = CartItem.objects.filter(cart__visitor_id=_visitor(client))
    assert sorted((i.product.name, i.quantity) for i in items) == [("Fresh", 1), ("Saved", 2)]
    assert Visitor.objects.get(pk=_visitor(client)).user == user


def test_orders_are_listed_by_user_not_by_the_visitors_later_owner(client):
    """An order placed by a signed-in user stays theirs even if its visitor row changes hands."""
    alice = UserFactory(username="alice", password="pw-alice-123")
    bob = UserFactory(username="bob", password="pw-bob-123")
    product = ProductFactory(name="Matcha")
    client.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    client.post("/cart/add/", {"product_id": product.pk, "quantity": 1, "nonce": str(uuid.uuid4())})
    client.post("/checkout/", CHECKOUT)
    order = Order.objects.get()
    assert order.user == alice
    Visitor.objects.filter(pk=order.visitor_id).update(user=bob)  # e.g. an admin's merge gone wrong

    bob_client = Client()
    bob_client.post("/accounts/login/", {"username": "bob", "password": "pw-bob-123"})
    assert order.number not in bob_client.get("/accounts/").content.decode()


def test_anonymous_history_and_orders_join_the_account_on_login(client):
    user = UserFactory(username="lin", password="pw-lin-123")
    product = ProductFactory(name="Buckwheat")
    client.get(product.get_absolute_url())
    client.post("/cart/add/", {"product_id": product.pk, "quantity": 1, "nonce": str(uuid.uuid4())})
    client.post("/checkout/", CHECKOUT)

    client.post("/accounts/login/", {"username": "lin", "password": "pw-lin-123"})

    assert Order.objects.get().user == user
    assert set(Event.objects.values_list("user_id", flat=True)) == {user.pk}
    assert "Buckwheat" in client.get("/accounts/").content.decode()
