"""Sign up, log in, log out and the account page."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model

from shop.events.middleware import visitor_id_from_cookie
from shop.events.models import Event, EventType, Visitor
from shop.orders.models import Order
from tests.factories import OrderFactory, OrderLineFactory, ProductFactory, UserFactory, VisitorFactory

pytestmark = pytest.mark.django_db

CHECKOUT = {
    "full_name": "Grace Hopper",
    "email": "grace@example.com",
    "address_line": "1 Navy Way",
    "postal_code": "20001",
    "city": "Washington",
    "country": "United States",
}


def test_sign_up_logs_the_new_user_in(client):
    response = client.post(
        "/accounts/signup/",
        {
            "username": "grace",
            "email": "Grace@Example.com",
            "first_name": "Grace",
            "password1": "compiler-1952-cobol",
            "password2": "compiler-1952-cobol",
        },
        follow=True,
    )

    user = get_user_model().objects.get(username="grace")
    assert user.email == "grace@example.com"
    assert response.context["user"] == user
    assert response.redirect_chain[-1][0] == "/accounts/"
    assert "Hello, Grace" in response.content.decode()


def test_sign_up_explains_what_is_wrong(client):
    UserFactory(username="taken", email="taken@example.com")
    response = client.post(
        "/accounts/signup/",
        {"username": "someone", "email": "taken@example.com", "password1": "abc", "password2": "abd"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "An account with this email already exists." in html
    assert "The two password fields didn" in html
    assert not get_user_model().objects.filter(username="someone").exists()


def test_log_in_attaches_the_anonymous_visitors_history(client):
    user = UserFactory(username="ada", password="analytical-engine")
    product = ProductFactory()
    client.get(product.get_absolute_url())  # an anonymous product view
    visitor_id = visitor_id_from_cookie(client.cookies["vid"].value)
    assert Event.objects.get(type=EventType.VIEW).user_id is None

    response = client.post("/accounts/login/", {"username": "ada", "password": "analytical-engine"})

    assert response.status_code == 302 and response["Location"] == "/accounts/"
    assert Event.objects.get(type=EventType.VIEW).user_id == user.pk
    assert Visitor.objects.get(pk=visitor_id).user_id == user.pk
    client.get(product.get_absolute_url())  # and later events carry the user directly
    assert set(Event.objects.values_list("user_id", flat=True)) == {user.pk}


def test_wrong_password_is_refused_with_a_message(client):
    UserFactory(username="ada", password="right")
    response = client.post("/accounts/login/", {"username": "ada", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_account_needs_a_login(client):
    response = client.get("/accounts/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/accounts/")


def test_account_shows_order_history(client):
    user = UserFactory(username="lin")
    mine = OrderLineFactory(
        order=OrderFactory(visitor=VisitorFactory(user=user), user=user), product__name="Jasmine Rice"
    ).order
    theirs = OrderLineFactory(product__name="Someone Else's Tea").order
    client.force_login(user)

    html = client.get("/accounts/").content.decode()

    assert mine.number in html and "Jasmine Rice" in html
    assert theirs.number not in html


def test_orders_placed_before_logging_in_join_the_history(client):
    user = UserFactory(username="kay", password="pw-kay-123")
    product = ProductFactory(name="Buckwheat Groats")
    client.post("/cart/add/", {"product_id": product.pk, "quantity": 1, "nonce": str(uuid.uuid4())})
    client.post("/checkout/", CHECKOUT)

    client.post("/accounts/login/", {"username": "kay", "password": "pw-kay-123"})
    html = client.get("/accounts/").content.decode()

    assert "Buckwheat Groats" in html
    assert Order.objects.get().visitor.user == user


def test_log_out_is_a_post(client):
    user = UserFactory()
    client.force_login(user)
    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/", follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert not response.context["user"].is_authenticated
