from __future__ import annotations

import uuid

from django import forms

from shop.catalog.web import PLACEMENT_RE

from .services import MAX_LINE_QUANTITY


class NonceForm(forms.Form):
    """Each rendered form carries a fresh uuid; the server stores a submit of it once."""

    nonce = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("nonce", uuid.uuid4())
        super().__init__(*args, **kwargs)


class AddToCartForm(NonceForm):
    product_id = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    quantity = forms.IntegerField(
        min_value=1,
        max_value=MAX_LINE_QUANTITY,
        initial=1,
        widget=forms.NumberInput(attrs={"class": "qty-input", "inputmode": "numeric"}),
    )
    # Where the shopper came from (the rail or list of the product page's ?from=&pos=).
    placement = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
    position = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=0)
    page_view_id = forms.UUIDField(widget=forms.HiddenInput, required=False)
    next = forms.CharField(widget=forms.HiddenInput, required=False, max_length=500)

    def clean_placement(self) -> str:
        value = (self.cleaned_data.get("placement") or "").lower()
        return value if PLACEMENT_RE.match(value) else ""


class CartUpdateForm(NonceForm):
    quantity = forms.IntegerField(
        min_value=0,
        max_value=MAX_LINE_QUANTITY,
        widget=forms.NumberInput(attrs={"class": "qty-input", "inputmode": "numeric"}),
    )


class CartRemoveForm(NonceForm):
    pass


class CheckoutForm(forms.Form):
    full_name = forms.CharField(
        label="Full name", max_length=120, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    email = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    address_line = forms.CharField(
        label="Street address", max_length=200, widget=forms.TextInput(attrs={"autocomplete": "street-address"})
    )
    city = forms.CharField(
        label="City", max_length=100, widget=forms.TextInput(attrs={"autocomplete": "address-level2"})
    )
    postal_code = forms.CharField(
        label="Postal code", max_length=20, widget=forms.TextInput(attrs={"autocomplete": "postal-code"})
    )
    country = forms.CharField(
        label="Country",
        max_length=60,
        initial="United States",
        widget=forms.TextInput(attrs={"autocomplete": "country-name"}),
    )

    def clean_full_name(self) -> str:
        name = " ".join(self.cleaned_data["full_name"].split())
        if len(name) < 2:
            raise forms.ValidationError("Please enter your full name.")
        return name

    def clean_postal_code(self) -> str:
        code = self.cleaned_data["postal_code"].strip().upper()
        if not any(ch.isalnum() for ch in code):
            raise forms.ValidationError("Please enter a valid postal code.")
        return code

    def address_text(self) -> str:
        d = self.cleaned_data
        return f"{d['address_line'].strip()}\n{d['postal_code']} {d['city'].strip()}\n{d['country'].strip()}"
