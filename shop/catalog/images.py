"""Product images drawn locally as SVG: no downloads, no files on disk.

``product_svg`` is a pure function of its arguments: the background hue comes from the category,
the package shape from keywords in the category name (a bottle for drinks and lotions, a book for
books...) or else from the seed, and the label carries the product's short name. The same inputs
always give the same bytes, so the view can cache it forever.
"""

from __future__ import annotations

import random
import re
import zlib
from xml.sax.saxutils import escape, quoteattr

# The first shape with a keyword that starts a word of the category name wins ("top" matches
# "Tops" but not "Laptops").
_SHAPE_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("book", "book novel fiction comic biograph history science business romance thriller picture young travel"),
    (
        "bottle",
        "water juice soda soft wine beer oil vinegar sauce shampoo conditioner lotion perfume fragrance serum "
        "cleanser wash bottle detergent milk cleaning",
    ),
    ("can", "canned soup energy sparkling paint"),
    (
        "bag",
        "coffee bean ground capsule tea snack chip crisp rice pasta flour cereal nuts candy bag dog cat litter "
        "seed baking tent sleeping backpack",
    ),
    ("tube", "toothpaste lip mascara cream moisturis sunscreen sun gel face eyes oral"),
    (
        "device",
        "headphone earbud speaker phone smartphone tablet laptop monitor camera drone watch smartwatch tv "
        "television streaming console keyboard mouse router charger audio computer storage appliance kettle "
        "blender fryer",
    ),
    ("garment", "shirt dress jacket coat hoodie sweater jeans trouser skirt top knitwear running"),
)
_SHAPE_PATTERNS = tuple(
    (shape, re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words.split()) + ")"))
    for shape, words in _SHAPE_KEYWORDS
)
_SHAPES = ("box", "bottle", "bag", "can", "tube", "device", "book", "garment")


def _hue(text: str) -> int:
    # crc32 rather than hash(): stable across processes (PYTHONHASHSEED).
    return zlib.crc32(text.strip().lower().encode("utf-8")) % 360


def _shape_for(category: str, rng: random.Random) -> str:
    lowered = category.lower()
    for shape, pattern in _SHAPE_PATTERNS:
        if pattern.search(lowered):
            return shape
    return rng.choice(("box", "box", "bag", "bottle", "can", "tube"))


def _label_lines(name: str, *, width: int = 16, max_lines: int = 2) -> list[str]:
    """Word-wrap the name into at most ``max_lines`` lines; an ellipsis marks what was cut."""
    words = name.split()
    lines: list[str] = []
    current = ""
    for word in words:
        if len(word) > width:
            word = word[: width - 1] + "…"
        candidate = f"{current} {word}".strip()
        if len(candidate) <= width:
            current = candidate
            continue
        lines.append(current)
        current = word
        if len(lines) == max_lines:
            break
    else:
        if current:
            lines.append(current)
        return lines or [""]
    # ran out of lines with words left over
    last = lines[-1]
    lines[-1] = (last[: width - 1] if len(last) >= width else last) + "…"
    return lines


def _hsl(h: int, s: int, lightness: int) -> str:
    return f"hsl({h % 360},{s}%,{lightness}%)"


def _package(shape: str, hue: int, rng: random.Random) -> tuple[str, tuple[int, int, int, int]]:
    """SVG for the package, and the label box (x, y, w, h) in the 400 x 400 frame."""
    body = _hsl(hue + rng.randint(150, 210), rng.randint(45, 75), rng.randint(35, 50))
    accent = _hsl(hue + rng.randint(-30, 30), rng.randint(55, 85), rng.randint(55, 70))
    dark = _hsl(hue, 30, 20)
    if shape == "bottle":
        svg = (
            f'<rect x="178" y="52" width="44" height="34" rx="6" fill="{dark}"/>'
            f'<path d="M172 86 h56 v26 q48 22 48 74 v150 q0 22 -22 22 h-108 q-22 0 -22 -22 v-150 q0 -52 48 -74 z" '
            f'fill="{body}"/>'
        )
        return svg, (132, 200, 136, 96)
    if shape == "can":
        svg = (
            f'<rect x="125" y="80" width="150" height="250" rx="18" fill="{body}"/>'
            f'<ellipse cx="200" cy="86" rx="75" ry="14" fill="{accent}"/>'
            f'<ellipse cx="200" cy="324" rx="75" ry="12" fill="{dark}" opacity="0.35"/>'
        )
        return svg, (135, 170, 130, 90)
    if shape == "bag":
        svg = (
            f'<path d="M110 90 l20 -24 h140 l20 24 v236 q0 14 -14 14 h-152 q-14 0 -14 -14 z" fill="{body}"/>'
            f'<path d="M130 66 l10 24 h120 l10 -24" fill="none" stroke="{dark}" stroke-width="4"/>'
        )
        return svg, (126, 170, 148, 100)
    if shape == "tube":
        svg = (
            f'<path d="M150 60 h100 l12 230 q0 10 -10 10 h-104 q-10 0 -10 -10 z" fill="{body}"/>'
            f'<rect x="172" y="300" width="56" height="44" rx="8" fill="{dark}"/>'
        )
        return svg, (150, 150, 100, 100)
    if shape == "device":
        svg = (
            f'<rect x="80" y="90" width="240" height="200" rx="22" fill="{dark}"/>'
            f'<rect x="96" y="106" width="208" height="150" rx="10" fill="{body}"/>'
            f'<circle cx="200" cy="273" r="8" fill="{accent}"/>'
        )
        return svg, (104, 140, 192, 90)
    if shape == "book":
        svg = (
            f'<rect x="110" y="60" width="190" height="280" rx="6" fill="{body}"/>'
            f'<rect x="110" y="60" width="22" height="280" fill="{dark}" opacity="0.5"/>'
            f'<rect x="150" y="90" width="130" height="8" fill="{accent}"/>'
        )
        return svg, (140, 150, 150, 110)
    if shape == "garment":
        svg = (
            f'<path d="M150 70 l-70 40 l26 56 l30 -14 v178 h128 v-178 l30 14 l26 -56 l-70 -40 '
            f'q-50 34 -100 0 z" fill="{body}"/>'
        )
        return svg, (140, 170, 120, 90)
    # box
    svg = (
        f'<path d="M100 120 l40 -40 h160 l-40 40 z" fill="{accent}"/>'
        f'<path d="M300 80 v200 l-40 40 v-200 z" fill="{dark}" opacity="0.6"/>'
        f'<rect x="100" y="120" width="160" height="200" fill="{body}"/>'
    )
    return svg, (108, 170, 144, 100)


def product_svg(*, name: str, category: str, seed: int, size: int = 400) -> str:
    """A believable product picture as an SVG document (deterministic in its arguments)."""
    rng = random.Random(seed)
    hue = _hue(category)
    shape = _shape_for(category, rng)
    package, (lx, ly, lw, lh) = _package(shape, hue, rng)
    # The label shows the short name: the variant after the comma ("..., 1 kg") is left off.
    short = name.split(",")[0].strip() or name.strip()
    font = 15
    lines = _label_lines(short, width=max(8, int((lw - 8) / (font * 0.62))), max_lines=3 if lh >= 100 else 2)
    if len(lines) == 1 and len(lines[0]) * font * 0.62 < lw * 0.6:
        font = 19
    text_x = lx + lw / 2
    first_y = ly + lh / 2 - (len(lines) - 1) * (font + 2) / 2 + font / 3
    tspans = "".join(
        f'<tspan x="{text_x:g}" y="{first_y + i * (font + 2):g}">{escape(line)}</tspan>' for i, line in enumerate(lines)
    )
    top = _hsl(hue, 65, 92)
    bottom = _hsl(hue + 20, 55, 78)
    grad_id = f"bg{seed % 1_000_000}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{int(size)}" height="{int(size)}" '
        f'viewBox="0 0 400 400" role="img" aria-label={quoteattr(name)}>'
        f"<title>{escape(name)}</title>"
        f'<defs><linearGradient id="{grad_id}" x1="0" y1="0" x2="0" y2="1">'
        f'<stop offset="0" stop-color="{top}"/><stop offset="1" stop-color="{bottom}"/>'
        f"</linearGradient></defs>"
        f'<rect width="400" height="400" fill="url(#{grad_id})"/>'
        f'<ellipse cx="200" cy="352" rx="120" ry="14" fill="#000" opacity="0.12"/>'
        f"{package}"
        f'<rect x="{lx}" y="{ly}" width="{lw}" height="{lh}" rx="8" fill="#fff" opacity="0.92"/>'
        f'<text font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="{font}" '
        f'font-weight="600" fill="#222" text-anchor="middle">{tspans}</text>'
        f"</svg>"
    )
