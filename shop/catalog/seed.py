"""A believable, deterministic demo catalog, generated in memory (no database, no downloads).

Everything here is a pure function of the seed (and, for ``created_at``, of the ``now`` it is
given), so two runs with the same seed produce the same categories, brands and products:

* the category tree is fixed data (``TAXONOMY``): 11 departments, 130+ leaves, up to 4 levels
  (Grocery > Beverages > Coffee > Whole bean);
* brands are invented per department from name parts, a few dozen each, ~400 in all;
* product ``i`` is drawn from its own random stream ``Random(f"product:{seed}:{i}")``, so it does
  not depend on how many products are asked for: seeding 6,000 after 5,000 keeps the first 5,000
  unchanged and adds 1,000 (see ``services.catalog_seed``).

The database writes live in ``services.py``; this module only returns dataclasses.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

from django.utils.text import slugify

SEED_EXTERNAL_PREFIX = "seed"
CATALOG_AGE_DAYS = 548  # ~18 months of "created_at", so "new arrivals" means something
OUT_OF_STOCK_RATE = 0.07


# --------------------------------------------------------------------------------------------
# Variants: ordered options; for "amount" kinds a later option is a bigger (dearer) pack.
# --------------------------------------------------------------------------------------------
VARIANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    # kind: (options, price scales with the option's position)
    "weight": (("250 g", "500 g", "1 kg"), True),
    "weight_small": (("100 g", "150 g", "200 g"), True),
    "weight_pet": (("1.5 kg", "3 kg", "7 kg", "12 kg"), True),
    "volume": (("330 ml", "500 ml", "1 l", "1.5 l"), True),
    "volume_cosmetic": (("30 ml", "50 ml", "100 ml"), True),
    "volume_large": (("500 ml", "750 ml", "1 l"), True),
    "pack": (("Single", "Pack of 4", "Pack of 6", "Pack of 12"), True),
    "pods": (("10 capsules", "20 capsules", "40 capsules"), True),
    "teabags": (("20 bags", "50 bags", "100 bags"), True),
    "tablets": (("30 tablets", "60 tablets", "120 tablets"), True),
    "rolls": (("4 rolls", "9 rolls", "16 rolls", "24 rolls"), True),
    "capacity": (("64 GB", "128 GB", "256 GB", "512 GB", "1 TB"), True),
    "ssd": (("256 GB SSD", "512 GB SSD", "1 TB SSD"), True),
    "pieces": (("250 pieces", "500 pieces", "1000 pieces"), True),
    "place_settings": (("Set of 2", "Set of 4", "Set of 6"), True),
    "dimension": (("20 cm", "24 cm", "28 cm", "30 cm"), True),
    "bed": (("Single", "Double", "King", "Super King"), True),
    "dumbbell": (("2 x 5 kg", "2 x 10 kg", "2 x 20 kg"), True),
    "kettlebell": (("8 kg", "12 kg", "16 kg", "24 kg"), True),
    "tent": (("Green", "Sand", "Grey"), False),
    "colour": (("Black", "White", "Graphite", "Navy", "Silver", "Sage Green", "Coral", "Midnight Blue"), False),
    "colour_soft": (("Oatmeal", "Charcoal", "Dusty Pink", "Ivory", "Forest Green", "Terracotta", "Stone"), False),
    "shade": (("Nude 01", "Rose 02", "Berry 03", "Classic Red 04", "Plum 05", "Coral 06"), False),
    "apparel": (("XS", "S", "M", "L", "XL", "XXL"), False),
    "waist": (("W28 L30", "W30 L32", "W32 L32", "W34 L32", "W36 L34"), False),
    "shoe": (("EU 37", "EU 38", "EU 39", "EU 40", "EU 41", "EU 42", "EU 43", "EU 44", "EU 45"), False),
    "frame": (("Frame S", "Frame M", "Frame L"), False),
    "age": (("Ages 3+", "Ages 6+", "Ages 8+", "Ages 12+"), False),
    "players": (("2-4 players", "2-6 players", "3-8 players"), False),
    "book": (("Paperback", "Paperback", "Hardcover"), False),
    "screen": (("Standard", "Plus"), True),
    "seeds": (("Single packet", "Pack of 3"), True),
    "length": (("1 m", "2 m", "3 m"), True),
    "hose": (("15 m", "25 m", "30 m"), True),
    "paint": (("1 l", "2.5 l", "5 l"), True),
}


@dataclass(frozen=True)
class Leaf:
    """A leaf category and what sells in it."""

    nouns: tuple[str, ...]  # cheapest first: a noun's price comes from its part of ``price``
    price: tuple[float, float]  # shelf price range (before the pack-size factor)
    variants: tuple[str, ...] = ()
    adjectives: tuple[str, ...] = ()  # empty: the department's adjectives
    weight: float = 1.0  # share of products relative to other leaves


def L(*nouns: str, price: tuple[float, float], variants: tuple[str, ...] | str = (), adj=(), weight=1.0) -> Leaf:  # noqa: N802
    if isinstance(variants, str):
        variants = (variants,)
    return Leaf(nouns=nouns, price=price, variants=variants, adjectives=tuple(adj), weight=weight)


@dataclass(frozen=True)
class Department:
    """A root category: its brand vocabulary, adjectives, name pattern and description phrases."""

    code: str
    brand_heads: tuple[str, ...]
    brand_tails: tuple[str, ...]
    adjectives: tuple[str, ...]
    pattern: str  # "{brand} {adj} {noun}" or "{brand} {noun} {adj}"
    openers: tuple[str, ...]
    features: tuple[str, ...]
    closers: tuple[str, ...]
    tree: dict = field(default_factory=dict)


COFFEE_ADJ = ("Dark Roast", "Medium Roast", "Colombian", "Ethiopian", "Brazilian", "Guatemalan", "Organic", "Decaf")
TEA_ADJ = ("Organic", "Classic", "Loose Leaf", "Fair Trade", "Premium", "Everyday")

# fmt: off
DEPARTMENTS: dict[str, Department] = {
    "Grocery": Department(
        code="GRO",
        brand_heads=(
            "Golden", "Harvest", "Meadow", "Alpine", "Sunny", "Old Mill", "Brook", "Valley", "Hearth", "Willow",
            "Copper", "Oak", "Field", "Orchard", "Little", "Wild", "North", "Blue Hill", "Stone", "Honey",
        ),
        brand_tails=(
            "Farms", "& Co.", "Kitchen", "Pantry", "Provisions", "Grocers", "Foods", "Harvest", "Table", "Roasters",
            "Larder", "Market", "Dairy", "Bakehouse",
        ),
        adjectives=(
            "Organic", "Classic", "Premium", "Artisan", "Everyday", "Traditional", "Fair Trade", "Family", "Finest",
        ),
        pattern="{brand} {adj} {noun}",
        openers=(
            "{brand}'s {adj_l} {noun_l} is made in small batches from carefully chosen ingredients.",
            "A pantry favourite: {noun_l} from {brand}, {adj_l} and full of flavour.",
            "Our {adj_l} {noun_l} brings honest, simple quality to everyday cooking.",
        ),
        features=(
            "No artificial colours or preservatives.", "Sourced from growers we have worked with for years.",
            "Packed in a resealable, recyclable pack to keep it fresh.", "Suitable for vegetarians.",
            "Tested by our kitchen team for taste and consistency.",
        ),
        closers=(
            "Store in a cool, dry place and enjoy within a month of opening.",
            "Perfect for weekday meals and weekend treats alike.", "A staple worth keeping in the cupboard.",
        ),
        tree={
            "Beverages": {
                "Coffee": {
                    "Whole bean": L(
                        "Whole Bean Coffee", "Espresso Beans", "House Blend Beans", "Single-Origin Beans",
                        price=(6.99, 29.99),
                        variants="weight",
                        adj=COFFEE_ADJ,
                        weight=1.5,
                    ),
                    "Ground coffee": L(
                        "Ground Coffee", "Filter Coffee", "Espresso Grind", "Cafetière Blend",
                        price=(3.49, 14.99),
                        variants="weight",
                        adj=COFFEE_ADJ,
                    ),
                    "Coffee capsules": L(
                        "Espresso Capsules", "Lungo Capsules", "Ristretto Pods",
                        price=(2.99, 12.99),
                        variants="pods",
                        adj=COFFEE_ADJ,
                    ),
                },
                "Tea": {
                    "Black tea": L(
                        "English Breakfast Tea", "Earl Grey", "Assam Tea", "Darjeeling",
                        price=(1.99, 11.99),
                        variants="teabags",
                        adj=TEA_ADJ,
                    ),
                    "Green tea": L(
                        "Sencha Green Tea", "Jasmine Green Tea", "Genmaicha", "Matcha Powder",
                        price=(2.49, 19.99),
                        variants="teabags",
                        adj=TEA_ADJ,
                    ),
                    "Herbal tea": L(
                        "Chamomile Infusion", "Peppermint Tea", "Rooibos", "Ginger & Lemon Infusion",
                        price=(1.99, 7.99),
                        variants="teabags",
                        adj=TEA_ADJ,
                    ),
                },
                "Juice": L(
                    "Orange Juice", "Apple Juice", "Cloudy Apple Juice", "Tropical Juice", "Cranberry Juice",
                    price=(1.29, 5.99),
                    variants="volume",
                    adj=("Freshly Pressed", "Not From Concentrate", "Organic", "Smooth", "With Bits"),
                ),
                "Water": L(
                    "Still Spring Water", "Sparkling Mineral Water", "Alkaline Water",
                    price=(0.49, 6.99),
                    variants="pack",
                    adj=("Natural", "Glacier", "Mountain", "Lightly Sparkling"),
                ),
                "Soft drinks": L(
                    "Cola", "Cloudy Lemonade", "Ginger Beer", "Tonic Water", "Blood Orange Soda",
                    price=(0.89, 7.99),
                    variants="pack",
                    adj=("Classic", "Zero Sugar", "Craft", "Sparkling"),
                ),
            },
            "Pantry": {
                "Pasta & rice": L(
                    "Spaghetti", "Penne", "Fusilli", "Basmati Rice", "Arborio Rice", "Jasmine Rice",
                    price=(0.89, 6.99),
                    variants="weight",
                    adj=("Italian", "Wholewheat", "Organic", "Bronze-Cut", "Classic"),
                ),
                "Oils & vinegars": L(
                    "Sunflower Oil", "Apple Cider Vinegar", "Cold-Pressed Rapeseed Oil", "Balsamic Vinegar", "Extra Virgin Olive Oil",
                    price=(2.49, 22.99),
                    variants="volume_large",
                ),
                "Sauces & condiments": L(
                    "Tomato & Basil Sauce", "Green Pesto", "Sweet Chilli Sauce", "Soy Sauce", "Smoky Barbecue Sauce",
                    "Dijon Mustard",
                    price=(1.29, 5.99),
                    variants="weight_small",
                ),
                "Canned goods": L(
                    "Chopped Tomatoes", "Chickpeas", "Kidney Beans", "Tuna in Olive Oil", "Coconut Milk",
                    "Tomato Soup",
                    price=(0.59, 3.99),
                    variants="pack",
                ),
                "Baking": L(
                    "Baking Powder", "Caster Sugar", "Plain Flour", "Strong Bread Flour", "Cocoa Powder", "Vanilla Extract",
                    price=(0.89, 8.99),
                    variants="weight",
                ),
            },
            "Breakfast": {
                "Cereal": L(
                    "Granola", "Bircher Muesli", "Porridge Oats", "Corn Flakes", "Bran Flakes",
                    price=(1.49, 6.99),
                    variants="weight",
                    adj=("Crunchy", "Honey", "Fruit & Nut", "Organic", "Classic"),
                ),
                "Spreads": L(
                    "Strawberry Jam", "Orange Marmalade", "Smooth Peanut Butter", "Hazelnut Spread", "Wildflower Honey",
                    price=(1.49, 8.99),
                    variants="weight_small",
                ),
            },
            "Snacks": {
                "Crisps & chips": L(
                    "Sea Salt Crisps", "Tortilla Chips", "Kettle Chips", "Lentil Chips", "Salt & Vinegar Crisps",
                    price=(0.99, 3.99),
                    variants="weight_small",
                    adj=("Hand-Cooked", "Lightly Salted", "Crinkle-Cut", "Classic"),
                ),
                "Chocolate": L(
                    "Dark Chocolate 70%", "Milk Chocolate Bar", "Salted Caramel Chocolate", "Hazelnut Chocolate",
                    "White Chocolate Bar",
                    price=(0.99, 6.99),
                    variants="weight_small",
                    adj=("Fine", "Single-Origin", "Belgian", "Fair Trade", "Creamy"),
                ),
                "Nuts & dried fruit": L(
                    "Roasted Almonds", "Cashews", "Trail Mix", "Dried Mango", "Medjool Dates",
                    price=(1.99, 9.99),
                    variants="weight_small",
                ),
            },
            "Dairy & eggs": {
                "Milk": L(
                    "Whole Milk", "Semi-Skimmed Milk", "Oat Drink", "Almond Drink",
                    price=(0.89, 2.99),
                    variants="volume_large",
                    adj=("Fresh", "Organic", "Barista", "Unsweetened"),
                ),
                "Cheese": L(
                    "Mozzarella", "Mature Cheddar", "Brie", "Goat's Cheese", "Parmigiano Reggiano",
                    price=(1.79, 9.99),
                    variants="weight_small",
                    adj=("Aged", "Farmhouse", "Creamy", "Organic", "Extra Mature"),
                ),
            },
        },
    ),
    "Electronics": Department(
        code="ELE",
        brand_heads=(
            "Sona", "Volt", "Nexa", "Aero", "Lumi", "Pixel", "Quanta", "Zento", "Orbi", "Kairo", "Vexo", "Helio",
            "Tekna", "Nova", "Arcti", "Sync", "Polar", "Echo", "Strato", "Ion",
        ),
        brand_tails=("ra", "tek", "wave", "line", "lab", "ix", "core", "vox", "tron", "iq", "on", "sonic", "ware"),
        adjectives=("Pro", "Lite", "Max", "Plus", "Air", "Neo", "One", "X2", "S", "Ultra", "Mini", "Studio"),
        pattern="{brand} {noun} {adj}",
        openers=(
            "The {brand} {noun_l} {adj} is built for people who want great performance without the fuss.",
            "Meet the {noun_l} {adj} from {brand}: thoughtfully designed, easy to set up and a pleasure to use.",
            "{brand} packs its latest technology into the {noun_l} {adj}.",
        ),
        features=(
            "Long battery life keeps you going all day.", "Pairs in seconds and remembers your devices.",
            "Firmware updates add features over time.", "Premium materials and a two-year warranty.",
            "USB-C charging with fast-charge support.", "Energy-efficient design with a low standby draw.",
        ),
        closers=(
            "Everything you need is in the box.", "A smart upgrade for home, work or travel.",
            "Backed by friendly, local support.",
        ),
        tree={
            "Audio": {
                "Headphones": L(
                    "Over-Ear Headphones", "Noise-Cancelling Headphones", "On-Ear Headphones", "Studio Headphones",
                    price=(24.99, 379.99),
                    variants="colour",
                    weight=1.5,
                ),
                "Earbuds": L(
                    "True Wireless Earbuds", "Sport Earbuds", "Noise-Cancelling Earbuds",
                    price=(19.99, 249.99),
                    variants="colour",
                    weight=1.3,
                ),
                "Speakers": L(
                    "Bluetooth Speaker", "Smart Speaker", "Party Speaker", "Bookshelf Speakers", "Soundbar",
                    price=(24.99, 599.99),
                    variants="colour",
                ),
            },
            "Computers": {
                "Laptops": L(
                    "Convertible Laptop", "14-inch Laptop", "13-inch Ultrabook", "16-inch Gaming Laptop",
                    price=(399.0, 2199.0),
                    variants="ssd",
                ),
                "Monitors": L(
                    "Portable Monitor", "24-inch IPS Monitor", "27-inch 4K Monitor", "34-inch Ultrawide Monitor",
                    price=(109.0, 849.0),
                ),
                "Keyboards & mice": L(
                    "Wireless Keyboard", "Gaming Mouse", "Ergonomic Mouse", "Wireless Trackpad", "Mechanical Keyboard",
                    price=(14.99, 169.99),
                    variants="colour",
                ),
                "Storage": L(
                    "microSD Card", "USB-C Flash Drive", "External Hard Drive", "Portable SSD",
                    price=(7.99, 229.99),
                    variants="capacity",
                ),
            },
            "Phones & tablets": {
                "Smartphones": L(
                    "Compact Smartphone", "Smartphone", "5G Smartphone",
                    price=(149.0, 1099.0),
                    variants=("capacity", "colour"),
                ),
                "Tablets": L(
                    "Kids Tablet", "10-inch Tablet", "12-inch Tablet",
                    price=(89.0, 949.0), variants="capacity"
                ),
                "Accessories": {
                    "Phone cases": L(
                        "Silicone Case", "Clear Case", "Leather Folio Case", "Rugged Case",
                        price=(7.99, 44.99),
                        variants="colour",
                    ),
                    "Chargers & cables": L(
                        "Braided USB-C Cable", "Wireless Charging Pad", "10000 mAh Power Bank", "65W USB-C Charger",
                        price=(8.99, 69.99),
                        variants="colour",
                    ),
                },
            },
            "Cameras & drones": {
                "Cameras": L(
                    "Instant Camera", "Action Camera", "Compact Camera", "Mirrorless Camera",
                    price=(69.0, 1799.0),
                    variants="colour",
                ),
                "Drones": L("Mini Drone", "FPV Drone", "4K Camera Drone", price=(49.0, 1199.0)),
            },
            "TV & home cinema": {
                "Televisions": L(
                    "32-inch HD TV", "43-inch Smart TV", "55-inch 4K TV", "65-inch OLED TV",
                    price=(199.0, 2299.0)
                ),
                "Streaming devices": L("4K Streaming Stick", "Streaming Box", "Media Player", price=(24.99, 149.99)),
            },
            "Wearables": {
                "Smartwatches": L(
                    "Fitness Tracker", "Smartwatch", "GPS Running Watch",
                    price=(34.99, 479.99), variants="colour"
                ),
            },
        },
    ),
    "Home & Kitchen": Department(
        code="HOM",
        brand_heads=(
            "Hearth", "Casa", "Nord", "Linden", "Maple", "Ember", "Harbor", "Birch", "Atelier", "Fjord", "Cedar",
            "Juniper", "Loft", "Haven", "Clay", "Saltwood", "Ashby", "Marlow",
        ),
        brand_tails=(
            "home", " & Hall", " Living", "ware", " Kitchen", "craft", " Studio", " House", "nest", " Goods", "form",
        ),
        adjectives=(
            "Classic", "Essential", "Signature", "Everyday", "Heritage", "Scandi", "Professional", "Compact",
            "Deluxe",
        ),
        pattern="{brand} {adj} {noun}",
        openers=(
            "The {brand} {adj_l} {noun_l} combines good looks with everyday practicality.",
            "Designed in our {brand} studio, this {noun_l} is made to be used and loved for years.",
            "Make everyday moments better with the {adj_l} {noun_l} from {brand}.",
        ),
        features=(
            "Easy to clean and dishwasher safe where it matters.",
            "Made from durable, responsibly sourced materials.",
            "Thoughtful details you notice every time you use it.", "Backed by a five-year guarantee.",
            "Tested for thousands of cycles in our lab.",
        ),
        closers=(
            "A lovely gift, too.", "Pairs beautifully with the rest of the range.",
            "Built to last, not to be replaced.",
        ),
        tree={
            "Cookware": {
                "Pans": L(
                    "Non-Stick Frying Pan", "Cast Iron Skillet", "Stainless Steel Sauté Pan", "Carbon Steel Wok",
                    "Griddle Pan",
                    price=(12.99, 119.99),
                    variants="dimension",
                    weight=1.4,
                ),
                "Pots": L(
                    "Saucepan", "Stockpot", "Dutch Oven", "Enamelled Casserole",
                    price=(17.99, 229.99),
                    variants="dimension",
                ),
                "Bakeware": L(
                    "Loaf Tin", "Baking Tray", "Springform Cake Tin", "12-Cup Muffin Tray", price=(5.99, 34.99)
                ),
                "Knives": L("Bread Knife", "Santoku Knife", "Chef's Knife", "Knife Block Set", price=(12.99, 249.99)),
            },
            "Small appliances": {
                "Coffee machines": L(
                    "Milk Frother", "Filter Coffee Maker", "Espresso Machine", "Bean-to-Cup Coffee Machine",
                    price=(29.99, 799.0),
                    variants="colour",
                ),
                "Kettles & toasters": L(
                    "2-Slice Toaster", "Electric Kettle", "4-Slice Toaster", "Temperature Control Kettle",
                    price=(17.99, 109.99),
                    variants="colour_soft",
                ),
                "Blenders & mixers": L(
                    "Hand Blender", "Personal Blender", "Blender", "Food Processor", "Stand Mixer",
                    price=(19.99, 449.0),
                    variants="colour",
                ),
                "Air fryers": L("Air Fryer", "Dual Basket Air Fryer", "Air Fryer Oven", price=(49.99, 229.99)),
            },
            "Tableware": {
                "Plates & bowls": L(
                    "Stoneware Dinner Plates", "Pasta Bowls", "Serving Platter", "Side Plates",
                    price=(9.99, 79.99),
                    variants="place_settings",
                ),
                "Glassware": L(
                    "Wine Glasses", "Tumblers", "Champagne Flutes", "Highball Glasses",
                    price=(7.99, 59.99),
                    variants="place_settings",
                ),
                "Mugs": L("Stoneware Mug", "Espresso Cups", "Travel Mug", price=(5.99, 34.99), variants="colour_soft"),
            },
            "Bedding & bath": {
                "Duvet covers": L(
                    "Cotton Duvet Cover Set", "Linen Duvet Cover", "Percale Bedding Set",
                    price=(24.99, 149.99),
                    variants=("bed", "colour_soft"),
                ),
                "Pillows": L("Memory Foam Pillow", "Feather Pillow", "Hollowfibre Pillow Pair", price=(12.99, 79.99)),
                "Towels": L(
                    "Hand Towel Set", "Bath Towel", "Bath Sheet", "Waffle Robe",
                    price=(7.99, 69.99),
                    variants="colour_soft",
                ),
            },
            "Storage & organisation": L(
                "Drawer Organiser", "Storage Box", "Glass Food Containers", "Laundry Basket", "Shoe Rack",
                price=(6.99, 79.99),
                variants="colour_soft",
            ),
            "Lighting": L(
                "Wall Light", "LED Desk Lamp", "Table Lamp", "Pendant Light", "Floor Lamp",
                price=(17.99, 229.99),
                variants="colour_soft",
            ),
        },
    ),
    "Fashion": Department(
        code="FAS",
        brand_heads=(
            "Atlas", "Mira", "Rowan", "Sable", "Juno", "Indigo", "Ortega", "Bellamy", "Carver", "Dune", "Finch",
            "Harlow", "Isla", "Kestrel", "Lark", "Monroe", "Nomad", "Pax",
        ),
        brand_tails=(
            " & Reed", " Supply", " Studio", " Denim", " Atelier", " & Sons", " Label", " Collective", " Works",
            " Apparel", "",
        ),
        adjectives=(
            "Relaxed", "Slim-Fit", "Organic Cotton", "Classic", "Oversized", "Tailored", "Recycled", "Lightweight",
            "Heavyweight",
        ),
        pattern="{brand} {adj} {noun}",
        openers=(
            "The {adj_l} {noun_l} from {brand}: an easy piece you will reach for again and again.",
            "{brand} cuts this {noun_l} for a {adj_l} fit that works from morning to evening.",
            "A wardrobe essential, reimagined: the {brand} {noun_l}.",
        ),
        features=(
            "Soft, breathable fabric that keeps its shape wash after wash.",
            "Made in a certified factory with fair working conditions.", "True to size; our model wears a size M.",
            "Machine washable at 30 degrees.", "Finished with tonal stitching and branded buttons.",
        ),
        closers=(
            "Free returns within 30 days.", "Style it up or down.", "Part of our year-round essentials collection.",
        ),
        tree={
            "Women": {
                "Dresses": L(
                    "Wrap Dress", "Midi Dress", "Shirt Dress", "Knitted Dress", "Slip Dress",
                    price=(24.99, 149.99),
                    variants=("colour_soft", "apparel"),
                    weight=1.3,
                ),
                "Tops": L(
                    "Linen Blouse", "Cotton T-Shirt", "Ribbed Top", "Oversized Shirt", "Silk Cami",
                    price=(12.99, 69.99),
                    variants=("colour_soft", "apparel"),
                ),
                "Coats & jackets": L(
                    "Denim Jacket", "Quilted Jacket", "Puffer Jacket", "Trench Coat", "Wool Coat",
                    price=(49.99, 279.99),
                    variants=("colour_soft", "apparel"),
                ),
            },
            "Men": {
                "Shirts": L(
                    "Oxford Shirt", "Linen Shirt", "Flannel Shirt", "Polo Shirt", "Overshirt",
                    price=(19.99, 89.99),
                    variants=("colour_soft", "apparel"),
                ),
                "Trousers & jeans": L(
                    "Slim Jeans", "Chinos", "Cargo Trousers", "Straight Jeans", "Tapered Joggers",
                    price=(24.99, 119.99),
                    variants=("colour_soft", "waist"),
                ),
                "Knitwear": L(
                    "Merino Sweater", "Cardigan", "Hoodie", "Quarter-Zip Sweater", "Crew-Neck Sweatshirt",
                    price=(24.99, 129.99),
                    variants=("colour_soft", "apparel"),
                ),
            },
            "Shoes": {
                "Trainers": L(
                    "Running Trainers", "Canvas Sneakers", "Leather Trainers", "Slip-On Sneakers",
                    price=(34.99, 169.99),
                    variants=("colour", "shoe"),
                ),
                "Boots": L(
                    "Chelsea Boots", "Hiking Boots", "Ankle Boots", "Work Boots",
                    price=(49.99, 229.99),
                    variants=("colour_soft", "shoe"),
                ),
                "Sandals": L(
                    "Leather Sandals", "Slides", "Espadrilles", price=(14.99, 89.99), variants=("colour_soft", "shoe")
                ),
            },
            "Accessories": {
                "Bags": L(
                    "Crossbody Bag", "Everyday Backpack", "Leather Tote", "Weekender Bag",
                    price=(24.99, 249.99),
                    variants="colour_soft",
                ),
                "Sunglasses": L(
                    "Aviator Sunglasses", "Round Sunglasses", "Polarised Sunglasses",
                    price=(14.99, 159.99),
                    variants="colour",
                ),
                "Hats & scarves": L(
                    "Baseball Cap", "Bucket Hat", "Wool Beanie", "Cashmere Scarf",
                    price=(9.99, 89.99),
                    variants="colour_soft",
                ),
            },
        },
    ),
    "Sports & Outdoors": Department(
        code="SPO",
        brand_heads=(
            "Summit", "Ridge", "Trail", "Peak", "Stride", "Apex", "Boulder", "Current", "Tundra", "Vertex", "Kinetic",
            "Pace", "Cairn", "Fell", "Glacier", "Sprint",
        ),
        brand_tails=(
            "line", " Outdoor", " Sports", " Athletics", " Gear", "craft", " Active", " Works", " Co.", " Endurance",
        ),
        adjectives=("Performance", "Lightweight", "All-Weather", "Pro", "Trail", "Training", "Competition", "Packable"),
        pattern="{brand} {adj} {noun}",
        openers=(
            "Go further with the {brand} {adj_l} {noun_l}.",
            "Tested by athletes, the {noun_l} from {brand} is ready for whatever you throw at it.",
            "The {adj_l} {noun_l}: {brand}'s answer to tough conditions and long days.",
        ),
        features=(
            "Tough materials that shrug off mud, rain and knocks.", "Light enough to forget you are carrying it.",
            "Reflective details for low-light visibility.", "Designed with feedback from our community of testers.",
            "Repairable, with spare parts available for years.",
        ),
        closers=(
            "Get out there.", "Covered by our two-year warranty.", "Your next personal best starts here.",
        ),
        tree={
            "Fitness": {
                "Yoga": L(
                    "Yoga Strap", "Cork Yoga Block", "Meditation Cushion", "Yoga Mat",
                    price=(7.99, 79.99),
                    variants="colour_soft",
                ),
                "Weights": L(
                    "Kettlebell", "Hex Dumbbells", "Adjustable Dumbbells",
                    price=(19.99, 299.99), variants="dumbbell"
                ),
                "Cardio equipment": L(
                    "Skipping Rope", "Exercise Bike", "Rowing Machine", "Folding Treadmill",
                    price=(9.99, 1199.0)
                ),
            },
            "Cycling": {
                "Bikes": L(
                    "Hybrid Bike", "Mountain Bike", "Road Bike", "Gravel Bike", "Electric Bike",
                    price=(299.0, 2999.0),
                    variants="frame",
                ),
                "Cycling accessories": L(
                    "Cycling Gloves", "Mini Pump", "D-Lock", "Bike Lights Set", "Bike Helmet",
                    price=(9.99, 119.99),
                    variants="colour",
                ),
            },
            "Camping & hiking": {
                "Tents": L(
                    "Pop-Up Tent", "2-Person Tent", "4-Person Tent", "Backpacking Tent",
                    price=(39.99, 499.0),
                    variants="tent",
                ),
                "Sleeping bags": L(
                    "Summer Sleeping Bag", "3-Season Sleeping Bag", "Down Sleeping Bag",
                    price=(24.99, 299.99)
                ),
                "Backpacks": L(
                    "Daypack", "30 l Hiking Backpack", "45 l Trekking Pack",
                    price=(29.99, 219.99), variants="colour"
                ),
                "Camp kitchen": L("Insulated Water Bottle", "Titanium Pot Set", "Camping Stove", price=(9.99, 129.99)),
            },
            "Team sports": {
                "Football": L(
                    "Shin Guards", "Training Football", "Goalkeeper Gloves", "Match Football",
                    price=(9.99, 89.99)
                ),
                "Racket sports": L(
                    "Tennis Balls", "Badminton Set", "Tennis Racket", "Padel Racket",
                    price=(4.99, 199.99)
                ),
            },
            "Running": L(
                "Running Shorts", "Running Jacket", "Compression Tights", "Running Vest",
                price=(14.99, 129.99),
                variants=("colour", "apparel"),
            ),
        },
    ),
    "Beauty": Department(
        code="BEA",
        brand_heads=(
            "Lumière", "Velvet", "Bloom", "Aura", "Pure", "Rosé", "Sérum", "Dew", "Glow", "Petal", "Clarity",
            "Solstice", "Botanica", "Opal", "Silk", "Amber",
        ),
        brand_tails=(
            " Skin", " Beauty", " Lab", " & Bloom", " Botanics", " Cosmetics", " Apothecary", " Ritual", " Naturals",
            "",
        ),
        adjectives=(
            "Hydrating", "Nourishing", "Brightening", "Gentle", "Radiance", "Sensitive", "Revitalising",
            "Fragrance-Free",
        ),
        pattern="{brand} {adj} {noun}",
        openers=(
            "{brand}'s {adj_l} {noun_l} is formulated with skin-loving ingredients for visible results.",
            "Treat yourself to the {adj_l} {noun_l} from {brand}.",
            "A cult favourite: {brand} {noun_l}, now in a new {adj_l} formula.",
        ),
        features=(
            "Dermatologically tested and suitable for sensitive skin.", "Vegan and cruelty-free.",
            "Housed in recyclable packaging.", "Lightweight texture that absorbs quickly.",
            "Free from parabens and sulphates.",
        ),
        closers=(
            "Use daily for best results.", "Your new everyday ritual.", "Loved by our customers and our team alike.",
        ),
        tree={
            "Skincare": {
                "Moisturisers": L(
                    "Daily Moisturiser", "Night Cream", "Gel Cream", "Rich Face Cream",
                    price=(7.99, 64.99),
                    variants="volume_cosmetic",
                    weight=1.3,
                ),
                "Cleansers": L(
                    "Foaming Cleanser", "Micellar Water", "Cleansing Balm", "Exfoliating Toner",
                    price=(5.99, 34.99),
                    variants="volume_cosmetic",
                ),
                "Serums": L(
                    "Vitamin C Serum", "Hyaluronic Acid Serum", "Retinol Serum", "Niacinamide Serum",
                    price=(9.99, 79.99),
                    variants="volume_cosmetic",
                ),
                "Sun care": L(
                    "After-Sun Lotion", "Sunscreen SPF 50", "Face Sunscreen SPF 30",
                    price=(6.99, 34.99),
                    variants="volume_cosmetic",
                ),
            },
            "Hair care": {
                "Shampoo": L(
                    "Volumising Shampoo", "Repair Shampoo", "Anti-Dandruff Shampoo", "Curl Shampoo",
                    price=(3.99, 24.99),
                    variants="volume_large",
                ),
                "Conditioner": L(
                    "Repair Conditioner", "Detangling Conditioner", "Hair Mask",
                    price=(3.99, 27.99),
                    variants="volume_large",
                ),
                "Styling": L("Styling Cream", "Texturising Spray", "Hairspray", "Hair Oil", price=(4.99, 29.99)),
            },
            "Makeup": {
                "Lips": L(
                    "Matte Lipstick", "Lip Gloss", "Tinted Lip Balm", "Lip Liner", price=(4.99, 32.99), variants="shade"
                ),
                "Eyes": L(
                    "Eyeliner Pencil", "Brow Gel", "Volumising Mascara", "Eyeshadow Palette",
                    price=(4.99, 44.99)
                ),
                "Face": L(
                    "Concealer", "Blush", "Bronzer", "Setting Powder", "Foundation",
                    price=(6.99, 44.99),
                    variants="shade",
                ),
            },
            "Fragrance": L(
                "Body Mist", "Eau de Toilette", "Eau de Parfum",
                price=(14.99, 129.99),
                variants="volume_cosmetic",
                adj=("Amber", "Citrus", "Floral", "Woody", "Fresh", "Oud"),
            ),
            "Oral care": L(
                "Whitening Toothpaste", "Mouthwash", "Water Flosser", "Electric Toothbrush",
                price=(1.99, 129.99),
                adj=("Fresh Mint", "Sensitive", "Whitening", "Complete Care"),
            ),
        },
    ),
    "Toys & Games": Department(
        code="TOY",
        brand_heads=(
            "Tiny", "Happy", "Brick", "Wonder", "Jolly", "Puzzle", "Rocket", "Sunny", "Pip", "Kiddo", "Marble", "Owl",
            "Toot", "Zig",
        ),
        brand_tails=("Toys", " & Play", "works", "land", " Games", " Kids", " Studio", "kin", " Factory"),
        adjectives=("Deluxe", "Classic", "Junior", "Wooden", "Family", "Adventure", "Creative", "Mega"),
        pattern="{brand} {adj} {noun}",
        openers=(
            "Hours of fun with the {brand} {adj_l} {noun_l}.",
            "The {adj_l} {noun_l} from {brand} sparks imagination and keeps little hands busy.",
            "Playtime, upgraded: {brand}'s {noun_l}.",
        ),
        features=(
            "Made from safe, non-toxic materials.", "Encourages creativity, problem solving and sharing.",
            "Easy to tidy away when the game is over.", "Designed together with teachers and parents.",
            "Sturdy enough for enthusiastic play.",
        ),
        closers=(
            "A brilliant birthday present.", "Batteries not required.", "Fun for the whole family.",
        ),
        tree={
            "Building sets": L(
                "Building Blocks Set", "Space Station Kit", "Castle Building Set", "Marble Run",
                price=(9.99, 149.99),
                variants="age",
                weight=1.3,
            ),
            "Board games": L(
                "Strategy Board Game", "Family Quiz Game", "Cooperative Adventure Game", "Word Game", "Chess Set",
                price=(9.99, 59.99),
                variants="players",
            ),
            "Puzzles": L("Jigsaw Puzzle", "3D Puzzle", "Landscape Jigsaw", price=(7.99, 34.99), variants="pieces"),
            "Dolls & figures": L(
                "Action Figure", "Plush Bear", "Fashion Doll", "Doll's House",
                price=(7.99, 129.99), variants="age"
            ),
            "Outdoor toys": L(
                "Kite", "Water Blaster", "Kick Scooter", "Garden Trampoline",
                price=(7.99, 249.99), variants="age"
            ),
            "Baby & toddler": L(
                "Wooden Rattle", "Stacking Rings", "Shape Sorter", "Push-Along Walker", "Activity Gym",
                price=(6.99, 79.99),
            ),
            "Remote control": L(
                "RC Car", "RC Stunt Car", "RC Helicopter", "RC Boat", price=(19.99, 149.99), variants="colour"
            ),
        },
    ),
    "Books": Department(
        code="BOO",
        brand_heads=(
            "Penrose", "Blackbird", "Lantern", "Quill", "Harbour", "Wren", "Foxglove", "Ironbridge", "Paper Crane",
            "Orchid", "Riverrun", "Stonegate",
        ),
        brand_tails=(" Press", " Books", " Publishing", " House", " & Daughters", " Editions"),
        adjectives=(),  # book titles are built from their own word lists
        pattern="{title}",
        openers=(
            "{title} is the book everyone is talking about this season.",
            "From {brand}: {title}, a page-turner you will not want to put down.",
            "Critics agree: {title} is a remarkable read.",
        ),
        features=(
            "Includes an exclusive author interview.", "Now with a new afterword.",
            "Printed on paper from responsibly managed forests.", "A Sunday Times bestseller.",
            "Shortlisted for a major award.",
        ),
        closers=(
            "Perfect for book clubs.", "The ideal gift for curious readers.", "Start reading today.",
        ),
        tree={
            "Fiction": {
                "Crime & thriller": L(
                    "Silent Harbour", "Last Witness", "Cold Verdict", "Midnight Ferry", "Glass Alibi", "Quiet Hour",
                    price=(6.99, 20.0),
                    variants="book",
                    weight=1.4,
                ),
                "Science fiction & fantasy": L(
                    "Iron Stars", "Orbit of Ash", "Dragon's Crown", "Hollow Moon", "Last Archive", "Signal",
                    price=(6.99, 22.0),
                    variants="book",
                    weight=1.2,
                ),
                "Literary fiction": L(
                    "Summer at Larch House", "Small Mercies", "Salt and Light", "Orchard Years", "River Daughters",
                    price=(7.99, 20.0),
                    variants="book",
                ),
                "Romance": L(
                    "Paris in Spring", "Second Chances", "Letters to June", "Seaside Bakery", "Meet Me at Midnight",
                    price=(5.99, 16.99),
                    variants="book",
                ),
            },
            "Non-fiction": {
                "Biography": L(
                    "A Life in Music", "The Inventor", "Queen of the Air", "Against the Tide",
                    price=(8.99, 25.0),
                    variants="book",
                ),
                "History": L(
                    "Empires of Salt", "The Long Winter", "Rivers of Gold", "A Brief History of Maps",
                    price=(8.99, 30.0),
                    variants="book",
                ),
                "Popular science": L(
                    "The Hidden Brain", "Why Stars Burn", "Wild Genes", "The Clockwork Sky",
                    price=(8.99, 25.0),
                    variants="book",
                ),
                "Business": L(
                    "The Lean Habit", "Small Teams, Big Ideas", "Deep Focus", "The Customer Mind",
                    price=(9.99, 28.0),
                    variants="book",
                ),
            },
            "Food & drink": {
                "Cookbooks": L(
                    "One-Pan Suppers", "Simply Italian", "The Plant Kitchen", "Weekend Baking", "Noodle Nights",
                    price=(12.99, 30.0),
                    variants="book",
                    weight=1.2,
                ),
            },
            "Children's books": {
                "Picture books": L(
                    "The Sleepy Owl", "Bear Goes to Town", "Moon and Me", "The Very Busy Dragon",
                    price=(4.99, 12.99),
                    variants="book",
                ),
                "Young adult": L(
                    "The Ember Trials", "Girls of the Storm", "City of Echoes", "Run, Wild",
                    price=(6.99, 14.99),
                    variants="book",
                ),
            },
            "Travel guides": L(
                "Lisbon", "Japan", "Iceland", "New York City", "The Scottish Highlands", "Vietnam",
                price=(8.99, 24.99),
                variants="book",
            ),
        },
    ),
    "Pet Supplies": Department(
        code="PET",
        brand_heads=("Happy", "Paws", "Whisker", "Barkley", "Tail", "Furry", "Loyal", "Meadow", "Purr", "Rover"),
        brand_tails=(" & Co.", " Pets", "wise", " Kitchen", " Naturals", " Friends", "", " Petcare"),
        adjectives=("Natural", "Grain-Free", "Premium", "Everyday", "Senior", "Complete", "Hypoallergenic"),
        pattern="{brand} {adj} {noun}",
        openers=(
            "Give your companion the best with {brand} {adj_l} {noun_l}.",
            "{brand}'s {noun_l} is developed with vets for happy, healthy pets.",
            "Pets love the {adj_l} {noun_l} from {brand}.",
        ),
        features=(
            "No artificial flavours or colours.", "Made with responsibly sourced ingredients and materials.",
            "Durable and easy to clean.", "Vet-approved recipe.",
        ),
        closers=("Tails will wag.", "Satisfaction guaranteed.", "Available in several sizes."),
        tree={
            "Dogs": {
                "Dog food": L(
                    "Dog Treats", "Wet Dog Food", "Puppy Food", "Adult Dry Dog Food",
                    price=(2.99, 64.99),
                    variants="weight_pet",
                    weight=1.3,
                ),
                "Dog toys": L(
                    "Rope Toy", "Squeaky Ball", "Chew Bone", "Puzzle Feeder",
                    price=(3.99, 24.99),
                    adj=("Durable", "Classic", "Cosy", "Interactive", "Eco", "Deluxe"),
                ),
                "Beds & crates": L(
                    "Orthopaedic Dog Bed", "Dog Crate", "Donut Bed",
                    price=(19.99, 149.99),
                    variants="colour_soft",
                    adj=("Durable", "Classic", "Cosy", "Interactive", "Eco", "Deluxe"),
                ),
            },
            "Cats": {
                "Cat food": L(
                    "Cat Treats", "Wet Cat Food Pouches", "Kitten Food", "Adult Dry Cat Food",
                    price=(1.99, 44.99),
                    variants="weight_pet",
                ),
                "Cat litter": L(
                    "Clumping Cat Litter", "Wood Pellet Litter", "Silica Litter",
                    price=(3.99, 24.99),
                    adj=("Natural", "Odour Control", "Unscented", "Eco", "Lightweight"),
                ),
                "Cat toys & scratchers": L(
                    "Catnip Mice", "Feather Wand", "Scratching Post", "Cat Tree",
                    price=(2.99, 119.99),
                    adj=("Durable", "Classic", "Cosy", "Interactive", "Eco", "Deluxe"),
                ),
            },
            "Fish & small pets": L(
                "Tropical Fish Flakes", "Hamster Cage", "Aquarium Starter Kit", "Rabbit Hutch",
                price=(3.99, 189.99),
                adj=("Durable", "Classic", "Cosy", "Interactive", "Eco", "Deluxe"),
            ),
        },
    ),
    "Garden & DIY": Department(
        code="GAR",
        brand_heads=(
            "Iron", "Green", "Forge", "Hedge", "Bolt", "Rook", "Thorn", "Grove", "Anvil", "Sprout", "Timber", "Flint",
            "Moss",
        ),
        brand_tails=("works", " Tools", " Garden", "craft", " Pro", "line", " & Spade", " Supply"),
        adjectives=("Cordless", "Heavy-Duty", "Professional", "Compact", "Ergonomic", "Stainless", "Weatherproof"),
        pattern="{brand} {adj} {noun}",
        openers=(
            "Get the job done with the {brand} {adj_l} {noun_l}.",
            "Built for weekend projects and professionals alike: {brand} {noun_l}.",
            "The {adj_l} {noun_l} from {brand} makes light work of the toughest tasks.",
        ),
        features=(
            "Comfortable grip for long jobs.", "Rust-resistant finish.", "Compatible with the whole battery range.",
            "Comes with a sturdy storage case.", "Tested to professional standards.",
        ),
        closers=("Three-year guarantee.", "Ready when you are.", "A workshop essential."),
        tree={
            "Power tools": {
                "Drills & drivers": L(
                    "Drill Driver", "Impact Driver", "Hammer Drill", "SDS Drill",
                    price=(29.99, 249.99)
                ),
                "Saws": L("Jigsaw", "Reciprocating Saw", "Circular Saw", "Mitre Saw", price=(39.99, 349.99)),
                "Sanders": L("Detail Sander", "Orbital Sander", "Belt Sander", price=(24.99, 149.99)),
            },
            "Hand tools": L(
                "Tape Measure", "Claw Hammer", "Spirit Level", "Screwdriver Set", "Socket Set",
                price=(4.99, 89.99)
            ),
            "Gardening": {
                "Seeds & bulbs": L(
                    "Tomato Seeds", "Herb Seed Kit", "Wildflower Seed Mix", "Tulip Bulbs", "Salad Leaf Seeds",
                    price=(1.49, 14.99),
                    variants="seeds",
                ),
                "Garden tools": L(
                    "Trowel & Fork Set", "Pruning Shears", "Leaf Rake", "Loppers", "Hose Reel",
                    price=(6.99, 79.99)
                ),
                "Watering": L(
                    "Spray Gun", "Watering Can", "Sprinkler", "Garden Hose",
                    price=(4.99, 69.99), variants="hose"
                ),
                "Outdoor furniture": L(
                    "Parasol", "Bistro Set", "Garden Bench", "Sun Lounger", "Corner Sofa Set",
                    price=(39.99, 899.0),
                    variants="colour_soft",
                ),
            },
            "Paint & decorating": L(
                "Masking Tape", "Wallpaper Paste", "Paint Roller Set", "Exterior Wood Paint", "Interior Emulsion",
                price=(2.99, 49.99),
            ),
        },
    ),
    "Health & Household": Department(
        code="HEA",
        brand_heads=("Vita", "Clean", "Fresh", "Pure", "Well", "Bright", "Nature's", "Daily", "Clear", "True"),
        brand_tails=("life", " Home", " & Well", " Health", "care", "ly", " Essentials", " Labs"),
        adjectives=("Everyday", "Concentrated", "Eco", "Sensitive", "Extra Strength", "Fresh", "Original"),
        pattern="{brand} {adj} {noun}",
        openers=(
            "{brand} {adj_l} {noun_l}: everyday care you can rely on.",
            "Keep the household running with {brand}'s {noun_l}.",
            "Trusted by families: the {adj_l} {noun_l} from {brand}.",
        ),
        features=(
            "Independently tested for quality.", "Refill packs available.", "Made in the UK.",
            "Kind to skin and to the planet.",
        ),
        closers=("Stock up and save.", "Keep out of reach of children.", "Simple, effective, good value."),
        tree={
            "Vitamins & supplements": L(
                "Vitamin D3", "Multivitamin", "Omega-3 Fish Oil", "Magnesium", "Vitamin C",
                price=(2.99, 24.99),
                variants="tablets",
            ),
            "Cleaning": L(
                "Laundry Detergent", "Dishwasher Tablets", "All-Purpose Cleaner", "Washing-Up Liquid",
                "Fabric Conditioner",
                price=(1.29, 19.99),
                variants="volume_large",
            ),
            "Paper goods": L("Toilet Tissue", "Kitchen Roll", "Facial Tissues", price=(1.49, 16.99), variants="rolls"),
            "First aid": L("Plasters", "Cold Pack", "Digital Thermometer", "First Aid Kit", price=(1.99, 29.99)),
        },
    ),
}
# fmt: on


# --------------------------------------------------------------------------------------------
# Generated rows (plain dataclasses; services.py turns them into model instances)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SeedCategory:
    path: tuple[str, ...]  # names from the root down
    name: str
    slug: str
    depth: int
    external_id: str
    parent_external_id: str | None
    description: str


@dataclass(frozen=True, slots=True)
class SeedBrand:
    name: str
    slug: str
    department: str


@dataclass(frozen=True, slots=True)
class SeedProduct:
    index: int
    sku: str
    external_id: str
    name: str
    slug: str
    description: str
    category_external_id: str
    brand_name: str
    price: Decimal
    stock: int
    image_seed: int
    created_at: dt.datetime


def _walk(tree: dict, path: tuple[str, ...]):
    for name, node in tree.items():
        here = (*path, name)
        yield here, node
        if isinstance(node, dict):
            yield from _walk(node, here)


def _tree_nodes() -> list[tuple[tuple[str, ...], object]]:
    nodes: list[tuple[tuple[str, ...], object]] = []
    for root, dept in DEPARTMENTS.items():
        nodes.append(((root,), dept.tree))
        nodes.extend(_walk(dept.tree, (root,)))
    return nodes


@functools.cache
def _category_slugs() -> dict[tuple[str, ...], str]:
    """Slug per path: the name's slug, prefixed with the parent's where names repeat ("Accessories")."""
    nodes = _tree_nodes()
    counts: dict[str, int] = {}
    for path, _ in nodes:
        counts[slugify(path[-1])] = counts.get(slugify(path[-1]), 0) + 1
    slugs = {}
    for path, _ in nodes:
        slug = slugify(path[-1])
        slugs[path] = slugify(f"{path[-2]} {path[-1]}") if counts[slug] > 1 else slug
    assert len(set(slugs.values())) == len(slugs), "category slugs must be unique"
    return slugs


def _category_external_id(path: tuple[str, ...]) -> str:
    return f"{SEED_EXTERNAL_PREFIX}:category:{_category_slugs()[path]}"


def category_tree() -> list[SeedCategory]:
    """The fixed category tree, parents before children."""
    slugs = _category_slugs()
    out = []
    for path, node in _tree_nodes():
        if isinstance(node, Leaf):
            description = f"{path[-1]}: " + ", ".join(n for n in node.nouns[:4]) + " and more."
        else:
            description = f"Shop {path[-1].lower()} in {path[0]}." if len(path) > 1 else f"Everything in {path[0]}."
        out.append(
            SeedCategory(
                path=path,
                name=path[-1],
                slug=slugs[path],
                depth=len(path) - 1,
                external_id=_category_external_id(path),
                parent_external_id=_category_external_id(path[:-1]) if len(path) > 1 else None,
                description=description,
            )
        )
    return out


def _round_price(value: float, rng: random.Random) -> Decimal:
    """A shelf price: 3.49, 12.99, 349.99, 1,299.00 ..."""
    if value < 10:
        cents = rng.choice((49, 79, 99, 99, 29))
        return Decimal(f"{max(0, math.floor(value))}.{cents:02d}")
    if value < 100:
        return Decimal(f"{math.floor(value)}.{rng.choice((99, 99, 99, 49, 95)):02d}")
    if value < 1000:
        whole = int(value // 10 * 10) + rng.choice((9, 9, 4))  # 349.99, 344.99
        return Decimal(f"{whole}.{rng.choice((99, 99, 0)):02d}")
    whole = int(value // 50 * 50) + rng.choice((49, 99, 99))
    return Decimal(f"{whole}.{rng.choice((0, 99)):02d}")


class CatalogGenerator:
    """Generates the catalog for one seed. ``product(i)`` depends only on (seed, i)."""

    def __init__(self, *, seed: int, now: dt.datetime):
        self.seed = seed
        self.now = now

    @cached_property
    def categories(self) -> list[SeedCategory]:
        return category_tree()

    @cached_property
    def leaves(self) -> list[tuple[tuple[str, ...], Leaf]]:
        out = []
        for root, dept in DEPARTMENTS.items():
            out.extend((path, node) for path, node in _walk(dept.tree, (root,)) if isinstance(node, Leaf))
        return out

    @cached_property
    def _cum_weights(self) -> list[float]:
        total, cum = 0.0, []
        for _, leaf in self.leaves:
            total += leaf.weight
            cum.append(total)
        return cum

    @cached_property
    def brands(self) -> list[SeedBrand]:
        """~40 invented brands per department (fewer where the name parts run out)."""
        seen: set[str] = set()
        out: list[SeedBrand] = []
        for root, dept in DEPARTMENTS.items():
            rng = random.Random(f"brands:{self.seed}:{root}")
            combos = [(h, t) for h in dept.brand_heads for t in dept.brand_tails]
            rng.shuffle(combos)
            wanted = 40
            for head, tail in combos:
                if len([b for b in out if b.department == root]) >= wanted:
                    break
                if tail[:1].islower():
                    name = head + tail  # "Sona" + "wave" -> "Sonawave"
                elif not tail or tail[0] == " ":
                    name = head + tail  # "Atlas" + " Supply"
                else:
                    name = f"{head} {tail}"  # "Old Mill" + "Bakehouse"
                slug = slugify(name)
                if not slug or slug in seen:
                    continue
                seen.add(slug)
                out.append(SeedBrand(name=name, slug=slug, department=root))
        return out

    @cached_property
    def _brands_by_leaf(self) -> dict[tuple[str, ...], list[str]]:
        """Each leaf is stocked by a handful of its department's brands, as in a real shop."""
        by_dept: dict[str, list[str]] = {}
        for b in self.brands:
            by_dept.setdefault(b.department, []).append(b.name)
        out = {}
        for path, _ in self.leaves:
            rng = random.Random(f"leaf-brands:{self.seed}:{'/'.join(path)}")
            pool = by_dept[path[0]]
            out[path] = rng.sample(pool, k=min(len(pool), rng.randint(5, 10)))
        return out

    def product(self, index: int) -> SeedProduct:
        rng = random.Random(f"product:{self.seed}:{index}")
        path, leaf = self.leaves[rng.choices(range(len(self.leaves)), cum_weights=self._cum_weights)[0]]
        dept = DEPARTMENTS[path[0]]
        brand = rng.choice(self._brands_by_leaf[path])
        noun_index = rng.randrange(len(leaf.nouns))
        noun = leaf.nouns[noun_index]
        adjectives = leaf.adjectives or dept.adjectives

        price_factor = 1.0
        variant_parts = []
        for kind in leaf.variants:
            options, scales = VARIANTS[kind]
            i = rng.randrange(len(options))
            variant_parts.append(options[i])
            if scales:
                price_factor *= 1 + 0.55 * i
        # Nouns are listed cheapest first: each takes its slice of the leaf's (log) price range,
        # widened a little so neighbours overlap (a skipping rope never costs what a treadmill does).
        lo, hi = leaf.price
        span = math.log(hi) - math.log(lo)
        n = len(leaf.nouns)
        a = max(0.0, noun_index / n - 0.1)
        b = min(1.0, (noun_index + 1) / n + 0.1)
        base = lo * math.exp(span * rng.uniform(a, b))
        price = _round_price(min(base * price_factor, hi * 2.5), rng)

        if dept.pattern == "{title}":
            core = noun  # the title; the publisher is the brand
            adj = ""
        else:
            adj = rng.choice(adjectives)
            core = dept.pattern.format(brand=brand, adj=adj, noun=noun)
        name = core + (", " + ", ".join(variant_parts) if variant_parts else "")

        fmt = {"brand": brand, "noun_l": noun.lower(), "adj": adj, "adj_l": adj.lower(), "title": core}
        if dept.pattern == "{title}":
            fmt["noun_l"] = core
        sentences = [rng.choice(dept.openers).format(**fmt)]
        sentences += rng.sample(dept.features, k=2)
        sentences.append(rng.choice(dept.closers).format(**fmt))
        if variant_parts:
            sentences.insert(-1, f"This listing is for: {', '.join(variant_parts)}.")
        description = " ".join(sentences)

        roll = rng.random()
        if roll < OUT_OF_STOCK_RATE:
            stock = 0
        elif roll < 0.2:
            stock = rng.randint(1, 5)
        elif roll < 0.7:
            stock = rng.randint(6, 60)
        else:
            stock = rng.randint(61, 400)

        age = dt.timedelta(seconds=rng.uniform(0, CATALOG_AGE_DAYS * 86400))
        return SeedProduct(
            index=index,
            sku=f"{dept.code}-{index + 1:06d}",
            external_id=product_external_id(seed=self.seed, index=index),
            name=name[:200],
            slug=slugify(name)[:220] or f"product-{index + 1}",
            description=description,
            category_external_id=_category_external_id(path),
            brand_name=brand,
            price=price,
            stock=stock,
            image_seed=rng.randrange(2**31),
            created_at=self.now - age,
        )

    def products(self, indices) -> list[SeedProduct]:
        return [self.product(i) for i in indices]


def product_external_id(*, seed: int, index: int) -> str:
    return f"{SEED_EXTERNAL_PREFIX}:{seed}:{index}"
