"""The locally drawn product pictures: valid SVG, stable, and safe with any product name."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from shop.catalog.images import product_svg

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _text(root: ET.Element) -> str:
    return " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


@pytest.mark.parametrize(
    "category",
    ["Whole bean", "Headphones", "Crime & thriller", "Shampoo", "Dresses", "Pans", "Sub-class 100407", "Canned goods"],
)
def test_is_an_svg_document_of_the_requested_size(category):
    root = _parse(product_svg(name="Nordkaffe Dark Roast Whole Bean Coffee, 1 kg", category=category, seed=7, size=320))
    assert root.tag == f"{SVG}svg"
    assert root.get("width") == "320" and root.get("height") == "320"
    assert root.find(f"{SVG}title").text == "Nordkaffe Dark Roast Whole Bean Coffee, 1 kg"
    # the label shows the short name (the variant after the comma is left off)
    assert "Nordkaffe" in _text(root) and "1 kg" not in _text(root)


def test_same_arguments_give_the_same_bytes_and_another_seed_another_picture():
    a = product_svg(name="Blue Mug", category="Mugs", seed=1)
    assert a == product_svg(name="Blue Mug", category="Mugs", seed=1)
    assert a != product_svg(name="Blue Mug", category="Mugs", seed=2)
    # the category decides the background hue: same product in another category looks different
    assert a != product_svg(name="Blue Mug", category="Tableware", seed=1)


def test_escapes_markup_in_names_and_categories():
    name = 'Tom & Jerry\'s <script>alert("x")</script> "Deluxe"'
    svg = product_svg(name=name, category='<b>&"odd"</b>', seed=3)
    root = _parse(svg)  # would raise on an unescaped < or &
    assert root.find(f"{SVG}title").text == name
    assert root.get("aria-label") == name
    assert "<script>" not in svg
    assert not list(root.iter("script")) and not list(root.iter(f"{SVG}script"))


def test_long_names_are_wrapped_and_cut_with_an_ellipsis():
    name = "Supercalifragilisticexpialidocious " + " ".join(["Extraordinarily"] * 12)
    root = _parse(product_svg(name=name, category="Toys", seed=5))
    lines = [t.text for t in root.iter(f"{SVG}tspan")]
    assert 1 <= len(lines) <= 3
    assert all(len(line) <= 20 for line in lines)
    assert lines[-1].endswith("…")


def test_empty_name_still_draws():
    root = _parse(product_svg(name="", category="", seed=0))
    assert root.tag == f"{SVG}svg"
