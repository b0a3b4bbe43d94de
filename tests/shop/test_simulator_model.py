"""The simulator's shopper model (pure) and its blindness (what it imports, what it reads)."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from scipy import stats

from shop.simulator.page import Card, parse_page
from shop.simulator.shopper import (
    DEFAULT_PARAMS,
    ProductFacts,
    examine_probability,
    examined,
    mnl_choice,
    plan_draw,
    tastes_draw,
)

SIMULATOR = Path(__file__).resolve().parents[2] / "shop" / "simulator"
DEPTS = ["beauty", "books", "electronics", "grocery", "home-kitchen", "pets", "sports", "toys"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_simulator_imports_only_the_stdlib_httpx_and_itself():
    allowed_third_party = {"httpx"}
    stdlib = set(sys.stdlib_module_names)
    files = sorted(SIMULATOR.rglob("*.py"))
    assert len(files) >= 5
    for path in files:
        for name in _imports(path):
            if name.startswith(".") or name.startswith("shop.simulator"):
                continue
            top = name.split(".")[0]
            assert top in stdlib or top in allowed_third_party, f"{path.name} imports {name}"


def test_importing_the_simulator_loads_no_django_and_no_shop_code():
    code = (
        "import sys, shop.simulator.run, shop.simulator.page, shop.simulator.browser;"
        "bad = sorted(m for m in sys.modules if m.startswith('django') or "
        "(m.startswith('shop.') and not m.startswith('shop.simulator')) or m == 'psycopg');"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=SIMULATOR.parents[1])
    assert result.returncode == 0, result.stdout + result.stderr


def test_simulator_never_reads_arms_model_versions_or_scores():
    for path in SIMULATOR.rglob("*.py"):
        text = path.read_text()
        for needle in ("data-arm", "data-model-version", "model_version", '"arm"', '"score"', "/api/recommendations"):
            if needle in text and not (path.name == "page.py" and needle in ("data-arm", "data-model-version")):
                pytest.fail(f"{path.name} mentions {needle}")


def test_cards_keep_only_whitelisted_attributes():
    html = (
        '<body data-page-view-id="6f1c2d0e-4b7a-4a34-9a8e-1c2d3e4f5a6b">'
        '<article class="card" data-product-id="12" data-placement="home.recommended" data-position="3" '
        'data-arm="dlrm" data-model-version="v0009" data-score="0.93">'
        '<a class="card-link" href="/products/12/tea/?from=home.recommended&amp;pos=3">'
        '<div class="card-body"><p class="card-brand">Leafy</p><h3 class="card-title">Green Tea</h3>'
        '<div class="card-foot"><span class="price">$1,204.50</span></div></div></a></article></body>'
    )
    page = parse_page(html, url="/", status=200)
    assert page.page_view_id == "6f1c2d0e-4b7a-4a34-9a8e-1c2d3e4f5a6b"
    (card,) = page.cards
    assert card == Card(
        product_id=12,
        placement="home.recommended",
        position=3,
        href="/products/12/tea/?from=home.recommended&pos=3",
        name="Green Tea",
        brand="Leafy",
        price=1204.50,
    )
    assert "dlrm" not in repr(page) and "v0009" not in repr(page) and "0.93" not in repr(page)


def test_examination_falls_with_position():
    probs = [examine_probability(k) for k in range(8)]
    assert probs[0] == 1.0 and all(a > b for a, b in zip(probs, probs[1:], strict=False))
    assert probs[7] == pytest.approx(8**-0.8) and probs[7] < 0.2
    rng = random.Random(0)
    seen = Counter(i for _ in range(20_000) for i in examined(list(range(8)), rng))
    assert seen[0] == 20_000
    assert seen[7] / 20_000 == pytest.approx(probs[7], abs=0.01)


def test_mnl_choice_frequencies_follow_the_logit_formula():
    import math

    utilities = [2.5, 1.0, 0.0]
    rng = random.Random(1)
    n = 30_000
    counts = Counter(mnl_choice(utilities, rng) for _ in range(n))
    weights = [math.exp(DEFAULT_PARAMS.u_none), *(math.exp(u) for u in utilities)]
    expected = [n * w / sum(weights) for w in weights]
    observed = [counts[None], counts[0], counts[1], counts[2]]
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    assert mnl_choice([], rng) is None


def test_tastes_are_seeded_and_independent_of_order():
    a = tastes_draw(seed=7, shopper=3, departments=DEPTS)
    b = tastes_draw(seed=7, shopper=3, departments=list(reversed(DEPTS)))
    c = tastes_draw(seed=8, shopper=3, departments=DEPTS)
    assert a == b and a != c
    assert sum(a.departments.values()) == pytest.approx(1.0)
    p = ProductFacts(product_id=5, department="pets", leaf="cat-food", brand="purrfect", price=12.0)
    assert a.utility(p) == b.utility(p) != c.utility(p)
    # a shopper prefers its favourite department, other things equal
    fav = max(a.departments, key=a.departments.get)
    least = min(a.departments, key=a.departments.get)
    fav_u = [a.utility(ProductFacts(i, fav, "x", "y", 12.0)) for i in range(300)]
    least_u = [a.utility(ProductFacts(i, least, "x", "y", 12.0)) for i in range(300)]
    assert sum(fav_u) / 300 > sum(least_u) / 300 + 1.0


def test_plans_are_seeded():
    plans = [plan_draw(seed=7, shopper=i) for i in range(400)]
    assert plans == [plan_draw(seed=7, shopper=i) for i in range(400)]
    assert plans != [plan_draw(seed=8, shopper=i) for i in range(400)]
    accounts = sum(p.has_account for p in plans) / 400
    assert accounts == pytest.approx(DEFAULT_PARAMS.p_account, abs=0.07)
    assert any(len(p.session_starts) > 1 for p in plans)
    for p in plans:
        assert list(p.session_starts) == sorted(p.session_starts) and 0 <= p.session_starts[0] < 1
