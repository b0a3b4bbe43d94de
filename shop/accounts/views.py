"""Sign up, log in, log out (Django's auth views) and the account page.

Logging in fires ``user_logged_in``; shop.accounts.signals decides which visitor this browser is
from then on (services.user_login_visitor); logging out gives the browser a new one.
"""

from __future__ import annotations

import hashlib

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from shop.api.throttles import KeyedRateThrottle
from shop.catalog.rails import RailContext, rails_fill
from shop.orders.selectors import order_list_for_user

from .forms import LoginForm, SignUpForm


class LoginView(auth_views.LoginView):
    """Django's login view, throttled (scope ``login``) per client address and per username."""

    form_class = LoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        username = (request.POST.get("username") or "").strip().lower()
        by_address = KeyedRateThrottle("login", "")
        by_address.key = f"ip:{by_address.get_ident(request)}"
        # the account's bucket by a digest of the name: a key of fixed length and alphabet in the shared cache,
        # whatever the client typed (a username is free text of any length; memcached refuses keys over 250
        # characters or with spaces, and Redis would hold a key as long as the posted field)
        account = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
        throttles = [by_address, KeyedRateThrottle("login", f"user:{account}")]
        refused = [t for t in throttles if not t.allow_request(request, self)]
        if refused:
            wait = max(int(t.wait() or 1) for t in refused)
            # an unbound form: validating the bound one would check the password after all
            form = self.form_class(request, initial={"username": request.POST.get("username", "")})
            form.full_clean()
            form.cleaned_data = {}
            form.add_error(None, f"Too many log-in attempts. Please wait {wait} seconds and try again.")
            response = self.render_to_response(self.get_context_data(form=form), status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)


class LogoutView(auth_views.LogoutView):
    """POST only (Django 5): a link or prefetch cannot log anyone out."""


def _safe_next(request: HttpRequest) -> str | None:
    nxt = request.POST.get("next") or request.GET.get("next")
    if nxt and url_has_allowed_host_and_scheme(
        nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return nxt
    return None


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("accounts:account")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.first_name or user.username}! Your account is ready.")
        return redirect(_safe_next(request) or "accounts:account")
    return render(request, "registration/signup.html", {"form": form, "next": _safe_next(request) or ""})


@login_required
def account(request: HttpRequest) -> HttpResponse:
    orders = order_list_for_user(user=request.user)
    rails = rails_fill(
        requests=["account.new_arrivals"],
        context=RailContext(visitor_id=request.visitor_id, user_id=request.user.pk),
    )
    return render(request, "accounts/account.html", {"orders": orders, "rails": rails})
