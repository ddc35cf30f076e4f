"""A deterministic demo store: the shop's own vocabulary and a generator that writes it in bulk.

The same seed (and the same reference day) always produces the same rows, so demos, tests and
benchmarks talk about the same products, customers and orders. Everything is inserted with Core
`insert()` in batches inside one transaction: a failed seed leaves the database as it was.
"""
from __future__ import annotations

import csv
import io
import json
import random
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from shop.models import (
    ORDER_STATUSES,
    Base,
    Brand,
    Category,
    Customer,
    DiscountCode,
    Order,
    OrderItem,
    Product,
    Refund,
    Return,
    ReturnItem,
    Review,
    Variant,
)

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

COLORS: Tuple[str, ...] = (
    "black", "white", "red", "blue", "navy", "green", "grey",
    "beige", "pink", "yellow", "brown", "purple", "orange",
)
CLOTHING_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
SHOE_SIZES = tuple(str(s) for s in range(36, 47))  # EU 36-46
KIDS_SIZES = ("2-3Y", "4-5Y", "6-7Y", "8-9Y", "10-11Y", "12-13Y")
KIDS_SHOE_SIZES = tuple(str(s) for s in range(28, 36))
ONE_SIZE = ("One Size",)

CATEGORIES: Tuple[str, ...] = (
    "Apparel", "Shoes", "Accessories", "Electronics", "Home", "Beauty", "Sports", "Kids",
)


@dataclass(frozen=True)
class ProductType:
    name: str
    category: str
    sizes: Tuple[str, ...]
    price: Tuple[int, int]  # whole dollars, low-high
    materials: Tuple[str, ...]
    genders: Tuple[str, ...]
    grams: Tuple[int, int]
    uses: Tuple[str, ...]
    features: Tuple[str, ...]
    colors: Tuple[str, ...] = COLORS
    weight: int = 10  # how common the type is in the catalog


def _t(name, category, sizes, price, materials, genders, grams, uses, features, colors=COLORS, weight=10):
    return ProductType(name, category, sizes, price, tuple(materials), tuple(genders), grams,
                       tuple(uses), tuple(features), tuple(colors), weight)


_ALL = ("men", "women", "unisex")
_NEUTRAL = ("black", "white", "grey", "navy", "beige", "brown", "green", "blue")

PRODUCT_TYPES: Tuple[ProductType, ...] = (
    # Apparel
    _t("T-Shirt", "Apparel", CLOTHING_SIZES, (12, 45), ["cotton", "organic cotton", "cotton blend", "linen"],
       _ALL, (140, 260), ["everyday wear", "warm days", "layering"],
       ["Crew neck with a reinforced collar that keeps its shape.", "Pre-washed for a soft hand feel from day one.",
        "Relaxed fit with slightly dropped shoulders.", "Side-seamed body for a clean drape."], weight=16),
    _t("Jeans", "Apparel", CLOTHING_SIZES, (35, 130), ["denim", "stretch denim", "organic denim", "selvedge denim"],
       ("men", "women"), (480, 820), ["everyday wear", "weekends", "the office on a Friday"],
       ["Five-pocket styling with copper rivets.", "Mid rise with a straight leg.",
        "A touch of stretch keeps them comfortable all day.", "Garment-washed for a lived-in look."], weight=14),
    _t("Jacket", "Apparel", CLOTHING_SIZES, (60, 280), ["leather", "denim", "nylon", "wool blend", "recycled polyester"],
       _ALL, (600, 1400), ["cool evenings", "commuting", "travel", "autumn walks"],
       ["Water-repellent finish sheds light rain.", "Two zipped hand pockets and an inner chest pocket.",
        "Adjustable cuffs and hem keep the wind out.", "Lined for extra warmth without bulk."], weight=14),
    _t("Dress", "Apparel", CLOTHING_SIZES, (30, 190), ["cotton", "linen", "viscose", "silk", "jersey"],
       ("women",), (250, 600), ["summer parties", "the office", "weddings", "weekends"],
       ["Midi length with a flattering A-line skirt.", "Hidden side pockets.",
        "Adjustable straps and a smocked back for an easy fit.", "Fully lined, with a concealed zip."], weight=12),
    _t("Hoodie", "Apparel", CLOTHING_SIZES, (35, 95), ["cotton fleece", "organic cotton", "recycled cotton"],
       _ALL, (450, 750), ["lounging", "cool mornings", "after the gym"],
       ["Brushed fleece inside for warmth.", "Kangaroo pocket and a double-layer hood.",
        "Ribbed cuffs and hem hold their shape."], weight=9),
    _t("Sweater", "Apparel", CLOTHING_SIZES, (40, 150), ["wool", "merino wool", "cashmere blend", "cotton"],
       _ALL, (300, 650), ["winter layering", "cosy evenings", "the office"],
       ["Fine-gauge knit that layers easily.", "Ribbed crew neck, cuffs and hem.",
        "Naturally breathable and odour resistant."], weight=8),
    _t("Shirt", "Apparel", CLOTHING_SIZES, (30, 115), ["cotton poplin", "oxford cotton", "linen", "flannel"],
       _ALL, (220, 380), ["the office", "dinners out", "smart-casual days"],
       ["Button-down collar and a single chest pocket.", "Curved hem looks neat tucked in or out.",
        "Mother-of-pearl style buttons."], weight=9),
    _t("Shorts", "Apparel", CLOTHING_SIZES, (20, 65), ["cotton twill", "linen", "recycled nylon"],
       _ALL, (180, 320), ["summer", "holidays", "weekends"],
       ["Elasticated back waist with a drawcord.", "7-inch inseam.", "Quick-drying fabric."], weight=6),
    _t("Skirt", "Apparel", CLOTHING_SIZES, (25, 95), ["cotton", "denim", "viscose", "wool blend"],
       ("women",), (200, 420), ["the office", "weekends", "evenings out"],
       ["High waist with a concealed side zip.", "Knee length with a gentle flare."], weight=5),
    _t("Coat", "Apparel", CLOTHING_SIZES, (90, 360), ["wool blend", "recycled down", "cotton gabardine"],
       _ALL, (1000, 1900), ["cold winter days", "commuting", "city breaks"],
       ["Storm flap and a detachable hood.", "Mid-thigh length for extra coverage.",
        "Insulated with responsibly sourced fill."], weight=6),
    _t("Chinos", "Apparel", CLOTHING_SIZES, (35, 95), ["cotton twill", "stretch cotton"],
       ("men", "women"), (400, 600), ["the office", "weekends", "travel"],
       ["Slim tapered leg.", "Stretch for all-day comfort.", "Garment-dyed for a rich colour."], weight=5),
    # Shoes
    _t("Sneakers", "Shoes", SHOE_SIZES, (45, 165), ["canvas", "leather", "suede", "knit", "recycled mesh"],
       _ALL, (600, 1000), ["everyday wear", "city walking", "weekends"],
       ["Cushioned insole for all-day comfort.", "Grippy vulcanised rubber outsole.",
        "Padded collar and tongue.", "Removable footbed made from recycled foam."], weight=18),
    _t("Running Shoes", "Shoes", SHOE_SIZES, (55, 190), ["engineered mesh", "knit", "recycled mesh"],
       _ALL, (450, 700), ["road running", "marathon training", "the gym", "daily miles"],
       ["Responsive foam midsole returns energy with every stride.", "Breathable upper keeps feet cool.",
        "Reflective details for early-morning runs.", "8 mm heel-to-toe drop."], weight=16),
    _t("Boots", "Shoes", SHOE_SIZES, (80, 270), ["leather", "suede", "waterproof nylon"],
       _ALL, (900, 1500), ["winter", "hiking", "rainy days"],
       ["Waterproof membrane keeps feet dry.", "Lug sole for grip on wet ground.",
        "Goodyear-welted so it can be resoled."], colors=_NEUTRAL, weight=9),
    _t("Sandals", "Shoes", SHOE_SIZES, (20, 95), ["leather", "recycled rubber", "cork"],
       _ALL, (300, 600), ["the beach", "summer holidays", "warm days"],
       ["Contoured cork footbed.", "Adjustable buckle straps."], weight=6),
    _t("Loafers", "Shoes", SHOE_SIZES, (60, 185), ["leather", "suede"],
       ("men", "women"), (600, 900), ["the office", "weddings", "smart-casual days"],
       ["Hand-stitched moccasin construction.", "Leather lining and a cushioned heel."], colors=_NEUTRAL, weight=5),
    _t("Trail Shoes", "Shoes", SHOE_SIZES, (70, 185), ["ripstop mesh", "recycled mesh"],
       _ALL, (550, 800), ["trail running", "hiking", "muddy paths"],
       ["Aggressive lugs bite into loose ground.", "Rock plate protects from sharp stones."], weight=6),
    # Accessories
    _t("Backpack", "Accessories", ONE_SIZE, (35, 160), ["canvas", "nylon", "leather", "recycled polyester"],
       ("unisex",), (600, 1200), ["commuting", "travel", "school"],
       ["Padded sleeve fits a 15-inch laptop.", "Water-resistant base.", "Luggage pass-through strap."], weight=8),
    _t("Belt", "Accessories", ONE_SIZE, (20, 85), ["leather", "canvas", "suede"],
       ("men", "women"), (120, 250), ["everyday wear", "the office"],
       ["Solid brass buckle.", "Full-grain leather that ages beautifully."], colors=_NEUTRAL, weight=5),
    _t("Cap", "Accessories", ONE_SIZE, (15, 40), ["cotton twill", "wool", "recycled polyester"],
       ("unisex",), (80, 120), ["sunny days", "running", "weekends"],
       ["Adjustable strap at the back.", "Curved brim and embroidered eyelets."], weight=5),
    _t("Scarf", "Accessories", ONE_SIZE, (18, 95), ["wool", "cashmere blend", "silk", "cotton"],
       ("unisex", "women"), (100, 250), ["winter", "travel", "chilly evenings"],
       ["Generously sized at 180 x 70 cm.", "Fringed edges."], weight=5),
    _t("Wallet", "Accessories", ONE_SIZE, (20, 120), ["leather", "recycled nylon"],
       ("unisex",), (60, 120), ["everyday carry"],
       ["Six card slots and a note compartment.", "RFID-blocking lining."], colors=_NEUTRAL, weight=5),
    _t("Sunglasses", "Accessories", ONE_SIZE, (25, 185), ["acetate", "metal", "recycled plastic"],
       ("unisex",), (30, 60), ["summer", "driving", "the beach"],
       ["Polarised lenses cut glare.", "100% UV400 protection.", "Comes with a hard case."], weight=5),
    _t("Watch", "Accessories", ONE_SIZE, (60, 420), ["stainless steel", "leather", "titanium"],
       ("unisex",), (60, 140), ["everyday wear", "the office", "special occasions"],
       ["Japanese quartz movement.", "Water resistant to 50 metres.", "Sapphire-coated crystal."], weight=4),
    _t("Tote Bag", "Accessories", ONE_SIZE, (15, 95), ["canvas", "leather", "recycled cotton"],
       ("women", "unisex"), (250, 700), ["shopping", "the beach", "work"],
       ["Inner zip pocket.", "Long handles fit comfortably over the shoulder."], weight=4),
    # Electronics
    _t("Wireless Earbuds", "Electronics", ONE_SIZE, (29, 249), ["recycled plastic"], ("unisex",), (40, 70),
       ["commuting", "workouts", "calls on the go"],
       ["Active noise cancelling.", "Up to 30 hours of battery with the case.", "Sweat and splash resistant (IPX4).",
        "Bluetooth 5.3 with multipoint pairing."], colors=("black", "white", "grey", "blue", "pink", "green"), weight=8),
    _t("Headphones", "Electronics", ONE_SIZE, (39, 399), ["aluminium", "recycled plastic"], ("unisex",), (200, 320),
       ["long flights", "working from home", "music at home"],
       ["Over-ear cushions with memory foam.", "40-hour battery and fast charging.", "Foldable design with a travel case."],
       colors=("black", "white", "grey", "navy", "beige"), weight=6),
    _t("Bluetooth Speaker", "Electronics", ONE_SIZE, (25, 299), ["fabric", "rubberised plastic"], ("unisex",),
       (300, 1100), ["parties", "the beach", "camping"],
       ["360-degree sound.", "Waterproof and dustproof (IP67).", "Pair two for stereo."], weight=5),
    _t("Smartwatch", "Electronics", ONE_SIZE, (79, 449), ["aluminium", "stainless steel"], ("unisex",), (40, 70),
       ["fitness tracking", "sleep tracking", "everyday wear"],
       ["Heart-rate and SpO2 sensors.", "Built-in GPS.", "Up to 7 days of battery life."],
       colors=("black", "white", "grey", "pink", "blue"), weight=5),
    _t("Phone Case", "Electronics", ONE_SIZE, (12, 49), ["silicone", "leather", "recycled plastic"], ("unisex",),
       (30, 60), ["everyday protection"],
       ["Raised edges protect the screen and camera.", "Works with wireless charging."], weight=5),
    _t("Power Bank", "Electronics", ONE_SIZE, (19, 89), ["aluminium", "recycled plastic"], ("unisex",), (180, 420),
       ["travel", "festivals", "long days out"],
       ["10,000 mAh charges a phone twice.", "USB-C power delivery in and out."],
       colors=("black", "white", "grey", "blue"), weight=4),
    _t("Keyboard", "Electronics", ONE_SIZE, (29, 199), ["aluminium", "plastic"], ("unisex",), (500, 1100),
       ["working from home", "gaming", "writing"],
       ["Hot-swappable mechanical switches.", "Connects over Bluetooth or USB-C."],
       colors=("black", "white", "grey", "beige"), weight=3),
    # Home
    _t("Throw Blanket", "Home", ONE_SIZE, (30, 145), ["wool", "cotton", "fleece"], ("unisex",), (800, 1600),
       ["the sofa", "cosy evenings", "the guest room"],
       ["Generous 130 x 170 cm size.", "Machine washable."], weight=5),
    _t("Cushion Cover", "Home", ONE_SIZE, (12, 45), ["linen", "cotton", "velvet"], ("unisex",), (150, 300),
       ["the living room", "the bedroom"], ["Hidden zip closure.", "Fits a 45 x 45 cm insert."], weight=4),
    _t("Mug", "Home", ONE_SIZE, (8, 32), ["ceramic", "stoneware", "enamel"], ("unisex",), (300, 450),
       ["morning coffee", "tea breaks"], ["Holds 350 ml.", "Dishwasher and microwave safe."], weight=4),
    _t("Scented Candle", "Home", ONE_SIZE, (12, 55), ["soy wax"], ("unisex",), (300, 600),
       ["relaxing evenings", "gifting"], ["Up to 45 hours of burn time.", "Cotton wick, no paraffin."], weight=4),
    _t("Table Lamp", "Home", ONE_SIZE, (35, 220), ["ceramic", "brass", "oak"], ("unisex",), (1200, 3000),
       ["the bedside", "the desk", "reading corners"],
       ["Dimmable warm light.", "Linen shade included."], weight=3),
    _t("Bath Towel", "Home", ONE_SIZE, (12, 60), ["organic cotton", "Turkish cotton"], ("unisex",), (500, 900),
       ["the bathroom", "the beach"], ["600 gsm and highly absorbent.", "Gets softer with every wash."], weight=3),
    _t("Duvet Cover", "Home", ONE_SIZE, (45, 185), ["cotton sateen", "linen", "percale"], ("unisex",),
       (1200, 2000), ["the bedroom"], ["Button closure and corner ties.", "Two pillowcases included."], weight=3),
    # Beauty
    _t("Face Cream", "Beauty", ONE_SIZE, (15, 95), ["vegan formula"], ("unisex", "women"), (80, 150),
       ["daily skincare", "dry skin"], ["With hyaluronic acid and niacinamide.", "Fragrance free.", "50 ml jar."],
       colors=("white", "beige", "pink"), weight=4),
    _t("Lipstick", "Beauty", ONE_SIZE, (10, 42), ["vegan formula"], ("women",), (20, 40),
       ["everyday wear", "evenings out"], ["Long-wearing satin finish.", "Enriched with shea butter."],
       colors=("red", "pink", "brown", "purple", "orange", "beige"), weight=4),
    _t("Shampoo", "Beauty", ONE_SIZE, (8, 36), ["natural extracts"], ("unisex",), (300, 550),
       ["daily washing", "coloured hair"], ["Sulphate free.", "Refillable 300 ml bottle."],
       colors=("white", "green", "blue", "yellow"), weight=3),
    _t("Perfume", "Beauty", ONE_SIZE, (35, 155), ["eau de parfum"], _ALL, (150, 350),
       ["evenings out", "gifting", "everyday wear"], ["Notes of bergamot, cedar and amber.", "50 ml bottle."],
       colors=("pink", "purple", "black", "white", "yellow"), weight=3),
    _t("Serum", "Beauty", ONE_SIZE, (18, 98), ["vitamin C"], ("unisex",), (60, 120),
       ["morning skincare", "dull skin"], ["Lightweight and fast absorbing.", "30 ml dropper bottle."],
       colors=("white", "orange", "yellow"), weight=3),
    _t("Nail Polish", "Beauty", ONE_SIZE, (6, 22), ["vegan formula"], ("women",), (30, 60),
       ["manicures at home"], ["Chip resistant for up to 7 days.", "Quick-dry brush."], weight=3),
    # Sports
    _t("Yoga Mat", "Sports", ONE_SIZE, (20, 115), ["natural rubber", "TPE", "cork"], ("unisex",), (900, 2500),
       ["yoga", "pilates", "home workouts"], ["6 mm thick with a non-slip surface.", "Carry strap included."], weight=4),
    _t("Gym Bag", "Sports", ONE_SIZE, (25, 95), ["recycled polyester", "canvas"], ("unisex",), (500, 900),
       ["the gym", "weekend trips"], ["Ventilated shoe compartment.", "Wet pocket for swimwear."], weight=3),
    _t("Water Bottle", "Sports", ONE_SIZE, (12, 45), ["stainless steel", "recycled plastic"], ("unisex",),
       (250, 420), ["workouts", "hiking", "the office"], ["Keeps drinks cold for 24 hours.", "Leak-proof lid."], weight=4),
    _t("Training Shorts", "Sports", CLOTHING_SIZES, (20, 60), ["recycled polyester", "nylon"], _ALL, (120, 220),
       ["the gym", "running", "HIIT classes"], ["Built-in liner.", "Zipped back pocket for keys."], weight=4),
    _t("Sports Bra", "Sports", CLOTHING_SIZES[:5], (25, 70), ["recycled nylon", "stretch jersey"], ("women",),
       (80, 150), ["running", "yoga", "the gym"], ["Medium support.", "Removable pads."], weight=3),
    _t("Track Jacket", "Sports", CLOTHING_SIZES, (45, 135), ["recycled polyester", "tricot"], _ALL, (350, 600),
       ["warm-ups", "training", "travel days"], ["Full zip with a stand collar.", "Zipped side pockets."], weight=3),
    _t("Leggings", "Sports", CLOTHING_SIZES, (30, 115), ["recycled nylon", "stretch jersey"], ("women", "unisex"),
       (180, 300), ["yoga", "running", "the gym"], ["High waist with a hidden pocket.", "Squat-proof fabric."], weight=4),
    # Kids
    _t("Kids T-Shirt", "Kids", KIDS_SIZES, (8, 26), ["organic cotton"], ("kids",), (90, 160),
       ["school", "playtime"], ["Soft, tag-free neckline.", "Prints that survive the washing machine."], weight=4),
    _t("Kids Sneakers", "Kids", KIDS_SHOE_SIZES, (25, 75), ["canvas", "recycled mesh"], ("kids",), (300, 500),
       ["school", "the playground"], ["Hook-and-loop straps for easy on and off.", "Non-marking sole."], weight=4),
    _t("Kids Jacket", "Kids", KIDS_SIZES, (30, 95), ["recycled polyester", "nylon"], ("kids",), (300, 600),
       ["rainy school runs", "outdoor play"], ["Waterproof and windproof.", "Reflective trims."], weight=3),
    _t("Kids Pyjamas", "Kids", KIDS_SIZES, (15, 40), ["organic cotton"], ("kids",), (150, 260),
       ["bedtime"], ["Two-piece set.", "Snug fit for safety."], weight=3),
    _t("Plush Toy", "Kids", ONE_SIZE, (10, 42), ["recycled polyester"], ("kids",), (150, 400),
       ["bedtime", "gifting"], ["Safety-tested embroidered eyes.", "Machine washable."], weight=3),
    _t("Building Blocks Set", "Kids", ONE_SIZE, (15, 125), ["plant-based plastic", "beech wood"], ("kids",),
       (400, 1800), ["creative play", "rainy days"], ["120 pieces with an idea booklet.", "Compatible with major brands."],
       weight=3),
)
TYPES_BY_NAME: Dict[str, ProductType] = {t.name: t for t in PRODUCT_TYPES}

BRANDS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("Northwind", ("Apparel", "Shoes")), ("Bluefield", ("Apparel",)), ("Copper & Pine", ("Apparel", "Accessories")),
    ("Harbor Lane", ("Apparel", "Home")), ("Alder & Co", ("Accessories", "Apparel")), ("Wildmoor", ("Apparel", "Sports")),
    ("Kestrel", ("Shoes", "Sports")), ("Loomwell", ("Apparel", "Home")), ("Maple Row", ("Home",)),
    ("Fernhill", ("Apparel", "Kids")), ("Ironbark", ("Shoes", "Accessories")), ("Saltmarsh", ("Apparel", "Accessories")),
    ("Brightwater", ("Beauty",)), ("Oakridge Supply", ("Accessories", "Home")), ("Redwood Athletic", ("Sports", "Shoes")),
    ("Stride Lab", ("Shoes",)), ("Peakform", ("Sports", "Apparel")), ("Lumen Audio", ("Electronics",)),
    ("Voltix", ("Electronics",)), ("Nestwell", ("Home",)), ("Hearth & Home", ("Home",)), ("Glowbird", ("Beauty",)),
    ("Petal & Stone", ("Beauty", "Home")), ("Tidewater", ("Apparel", "Shoes")), ("Urbanite", ("Apparel", "Accessories")),
    ("Velora", ("Apparel", "Beauty")), ("Quillon", ("Electronics", "Accessories")), ("Sunhaven", ("Accessories", "Apparel")),
    ("Marlowe", ("Apparel", "Shoes")), ("Fogline", ("Apparel",)), ("Birchwood", ("Home", "Kids")),
    ("Cobalt Street", ("Shoes", "Apparel")), ("Juniper Kids", ("Kids",)), ("Little Otter", ("Kids",)),
    ("Trailmark", ("Shoes", "Sports")), ("Pacewell", ("Shoes", "Sports")), ("Solace Beauty", ("Beauty",)),
    ("Aurora Skin", ("Beauty",)), ("Kindred Knit", ("Apparel", "Accessories")), ("Circuit & Co", ("Electronics",)),
    ("Greyhound Gear", ("Sports", "Accessories")), ("Hollow Oak", ("Home", "Accessories")),
)

LINE_NAMES = (
    "Aero", "Summit", "Harbor", "Metro", "Nova", "Drift", "Ridge", "Coast", "Echo", "Pulse", "Vista", "Atlas",
    "Orbit", "Sierra", "Alpine", "Breeze", "Canyon", "Delta", "Ember", "Fjord", "Glide", "Haven", "Juno", "Kite",
    "Lumen", "Meadow", "Nimbus", "Onyx", "Prairie", "Rally", "Solstice", "Tempo", "Terra", "Vela", "Willow",
    "Zephyr", "Cascade", "Dune", "Horizon", "Strata",
)
ADJECTIVES = (
    "Classic", "Everyday", "Essential", "Relaxed", "Slim", "Vintage", "Urban", "Lightweight", "Premium", "Cozy",
    "Heritage", "Modern", "Weekend", "Signature", "Performance", "Soft", "Rugged", "Minimal", "Retro", "Active",
    "Studio", "Travel", "Tailored", "Oversized", "Cropped", "Washed",
)
OPENINGS = (  # {thing} is "a relaxed jacket" or "a pair of relaxed sneakers"
    "Meet the {title}: {thing} from {brand}, made for {use}.",
    "From {brand}, {thing} you will reach for again and again, especially for {use}.",
    "Built for {use}: the {title} from {brand}, clean-lined and made from {material}.",
    "{brand}'s take on {thing}, designed for {use}.",
)
PLURAL_TYPES = frozenset({
    "Jeans", "Shorts", "Chinos", "Sneakers", "Running Shoes", "Boots", "Sandals", "Loafers", "Trail Shoes",
    "Wireless Earbuds", "Headphones", "Sunglasses", "Training Shorts", "Leggings", "Kids Sneakers", "Kids Pyjamas",
})
CLOSINGS = (
    "Free returns within 30 days.",
    "Pairs well with the rest of the {brand} range.",
    "Made in a certified fair-trade facility.",
    "Shipped in plastic-free packaging.",
    "Check the size guide for the best fit.",
    "",
)

FIRST_NAMES = (
    "Alex", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn", "Harper", "Emma", "Liam",
    "Olivia", "Noah", "Ava", "Ethan", "Sophia", "Mason", "Isabella", "Lucas", "Mia", "Logan", "Amelia", "James",
    "Charlotte", "Benjamin", "Evelyn", "Elijah", "Abigail", "Oliver", "Emily", "Daniel", "Ella", "Henry", "Grace",
    "Samuel", "Chloe", "David", "Zoe", "Leo", "Nora", "Mateo", "Lily", "Aiden", "Hannah", "Omar", "Priya", "Wei",
    "Yuki", "Fatima", "Carlos", "Sofia", "Ines", "Kwame", "Aisha", "Ravi", "Mei", "Lena", "Tomas", "Freya",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White",
    "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker",
    "Adams", "Nelson", "Hill", "Campbell", "Mitchell", "Carter", "Roberts", "Patel", "Nguyen", "Kim", "Chen",
    "Okafor", "Schmidt", "Rossi", "Novak", "Silva", "Haddad", "Kowalski", "Larsen", "Murphy", "O'Brien", "Sato",
)
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
STREETS = (
    "Maple", "Oak", "Cedar", "Pine", "Elm", "Washington", "Lake", "Hill", "Park", "Main", "Church", "River",
    "Sunset", "Highland", "Forest", "Meadow", "Willow", "Spring", "Valley", "Chestnut",
)
STREET_SUFFIXES = ("Street", "Avenue", "Road", "Lane", "Drive", "Court", "Way", "Boulevard")
US_CITIES = (  # city, state, zip prefix
    ("Portland", "OR", "972"), ("Seattle", "WA", "981"), ("Austin", "TX", "787"), ("Denver", "CO", "802"),
    ("Chicago", "IL", "606"), ("Boston", "MA", "021"), ("Atlanta", "GA", "303"), ("Minneapolis", "MN", "554"),
    ("San Diego", "CA", "921"), ("Brooklyn", "NY", "112"), ("Nashville", "TN", "372"), ("Phoenix", "AZ", "850"),
    ("Raleigh", "NC", "276"), ("Columbus", "OH", "432"), ("Madison", "WI", "537"), ("Salt Lake City", "UT", "841"),
)
INTERNATIONAL = ("GB", "DE", "CA", "NL")

CARRIERS_US = ("UPS", "FedEx", "USPS")
RETURN_REASONS = (
    "Too small", "Too large", "Not as described", "Changed my mind", "Arrived damaged",
    "Wrong item sent", "Colour different from the photos", "Poor quality",
)

REVIEW_TITLES = {
    5: ("Love it!", "Absolutely perfect", "Best purchase this year", "Five stars", "Exceeded expectations"),
    4: ("Really good", "Great buy", "Very happy", "Nice quality", "Almost perfect"),
    3: ("It's okay", "Decent", "Mixed feelings", "Average", "Does the job"),
    2: ("Disappointed", "Not great", "Expected more", "Meh"),
    1: ("Not for me", "Poor quality", "Would not recommend", "Returned it"),
}
REVIEW_BODIES = {
    5: ("Exactly as described and really well made. The {color} is even nicer in person.",
        "Best {noun} I have owned. Fits perfectly and arrived in two days.",
        "Bought this for {use} and it has been brilliant. Already ordered a second one.",
        "Great quality for the price. Comfortable from the first day.",
        "My partner loved it so much I had to buy another one."),
    4: ("Really nice {noun}, just runs a little small so size up.",
        "Good quality overall; the colour is slightly darker than the photo.",
        "Comfortable and well made. Delivery took a few days longer than expected.",
        "Very happy with it for {use}. Would be five stars if it came in more colours."),
    3: ("It's okay. Does the job but nothing special.",
        "Decent for the price, but the material feels a bit thin.",
        "Looks good, but the fit is a little odd for me.",
        "Fine for {use}, though I expected better finishing."),
    2: ("The stitching came loose after two weeks.",
        "Runs very large, I had to return it for a smaller size.",
        "Colour faded after the first wash. Disappointing.",
        "Not as comfortable as I hoped for {use}."),
    1: ("Broke after a week. Would not buy again.",
        "Arrived damaged and it took ages to get a reply.",
        "Nothing like the pictures. Sent it straight back.",
        "Poor quality {noun}, fell apart almost immediately."),
}

# (type, colours forced first, price band in dollars). The first products of every catalog, so
# that even a tiny seed has what the chat demo talks about: red sneakers under $80 and above.
ANCHORS: Tuple[Tuple[str, Tuple[str, ...], Tuple[int, int]], ...] = (
    ("Sneakers", ("red", "white"), (39, 69)),
    ("Running Shoes", ("red", "black"), (49, 75)),
    ("Sneakers", ("red", "navy"), (95, 140)),
    ("Running Shoes", ("red", "blue"), (110, 170)),
    ("Jeans", ("blue", "black"), (45, 90)),
    ("Jacket", ("black", "navy"), (80, 180)),
    ("T-Shirt", ("white", "red", "black"), (15, 30)),
    ("Dress", ("red", "navy"), (45, 120)),
    ("Sneakers", ("red", "black"), (55, 79)),
    ("Running Shoes", ("red",), (85, 150)),
    ("Sneakers", ("white", "black"), (60, 120)),
    ("Jacket", ("green", "beige"), (70, 160)),
)

# The demo's known shopper: one order in every status, a personal code.
DEMO_CUSTOMER = {
    "first_name": "Alex", "last_name": "Morgan", "email": "alex.morgan@example.com",
    "phone": "+1 503-555-0142", "address_line": "742 Maple Street", "city": "Portland, OR",
    "postcode": "97205", "country": "US",
}

SIZE_PRESETS: Dict[str, Dict[str, int]] = {
    "demo": {"products": 1000, "reviews": 3500, "customers": 250, "orders": 1200},
    "large": {"products": 100_000, "reviews": 100_000, "customers": 5000, "orders": 20_000},
}

TAX_RATE_PERCENT = 8
STANDARD_SHIPPING_CENTS = 599
EXPRESS_SHIPPING_CENTS = 1299
FREE_SHIPPING_OVER_CENTS = 7500
POPULAR_POOL = 5000  # orders draw their lines from at most this many products
BATCH = 5000


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def slugify(value: str) -> str:
    """URL-safe slug: 'Copper & Pine Classic T-Shirt' -> 'copper-pine-classic-t-shirt'."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^a-zA-Z0-9]+", "-", value).strip("-").lower()
    return value or "item"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _price_cents(rng: random.Random, low: int, high: int) -> int:
    dollars = rng.randint(low, max(low, high))
    cents = rng.choice((0, 0, 50, 95, 99, 99))
    if cents and dollars > low:
        dollars -= 1
    return dollars * 100 + cents


def _join_colors(colors: Sequence[str]) -> str:
    if len(colors) == 1:
        return colors[0]
    return ", ".join(colors[:-1]) + " and " + colors[-1]


@dataclass
class SeedConfig:
    seed: int = 42
    products: int = SIZE_PRESETS["demo"]["products"]
    reviews: int = SIZE_PRESETS["demo"]["reviews"]
    customers: int = SIZE_PRESETS["demo"]["customers"]
    orders: int = SIZE_PRESETS["demo"]["orders"]
    today: Optional[date] = None  # the reference day; data lies before it. Default: today (UTC).

    @classmethod
    def preset(cls, size: str = "demo", **overrides) -> "SeedConfig":
        values = dict(SIZE_PRESETS[size])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class SeedReport:
    seeded: bool
    categories: int = 0
    brands: int = 0
    products: int = 0
    variants: int = 0
    reviews: int = 0
    customers: int = 0
    discount_codes: int = 0
    orders: int = 0
    order_items: int = 0
    returns: int = 0
    refunds: int = 0
    orders_by_status: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    message: str = ""


class _Batcher:
    """Collects rows for one table and inserts them in batches: Core executemany, or COPY on PostgreSQL."""

    def __init__(self, conn: Connection, model, *parents: "_Batcher"):
        self.conn = conn
        self.table = model.__table__
        self.parents = parents  # batches whose rows ours reference: they are written first
        self.rows: List[dict] = []
        self.count = 0
        self.copy = conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2"

    def add(self, row: dict) -> None:
        self.rows.append(row)

    def flush_if_full(self) -> None:
        """Called between records, never inside one, so a flushed batch holds only whole records."""
        if len(self.rows) >= BATCH:
            self.flush()

    def flush(self) -> None:
        for parent in self.parents:
            parent.flush()
        if self.rows:
            if self.copy:
                self._copy(self.rows)
            else:
                self.conn.execute(self.table.insert(), self.rows)
            self.count += len(self.rows)
            self.rows = []

    def _copy(self, rows: List[dict]) -> None:
        """COPY is several times faster than multi-row INSERTs on PostgreSQL (same transaction)."""
        columns = list(rows[0])
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            writer.writerow([_copy_value(row[c]) for c in columns])
        buffer.seek(0)
        names = ", ".join(f'"{c}"' for c in columns)
        cursor = self.conn.connection.cursor()
        try:
            cursor.copy_expert(
                f'COPY "{self.table.name}" ({names}) FROM STDIN WITH (FORMAT csv, NULL \'\\N\')', buffer
            )
        finally:
            cursor.close()


def _copy_value(value):
    if value is None:
        return "\\N"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def _next_id(conn: Connection, model) -> int:
    return (conn.execute(select(func.max(model.__table__.c.id))).scalar() or 0) + 1


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------

@dataclass
class _VariantInfo:
    id: int
    product_title: str
    label: str
    price_cents: int
    category: str


class _Generator:
    def __init__(self, conn: Connection, config: SeedConfig, tick: Callable[[int, str], None]):
        self.conn = conn
        self.config = config
        self.rng = random.Random(config.seed)
        today = config.today or datetime.utcnow().date()
        self.today = today
        self.now = datetime.combine(today, time(0, 0))  # everything happens before this instant
        self.tick = tick
        self.report = SeedReport(seeded=True)

    # -- categories & brands ------------------------------------------------------------
    def categories_and_brands(self) -> None:
        existing = dict(self.conn.execute(select(Category.name, Category.id)).all())
        next_id = _next_id(self.conn, Category)
        rows = []
        for name in CATEGORIES:
            if name not in existing:
                existing[name] = next_id
                rows.append({"id": next_id, "name": name, "slug": slugify(name)})
                next_id += 1
        if rows:
            self.conn.execute(Category.__table__.insert(), rows)
        self.category_ids = existing
        self.report.categories = len(rows)

        brands = dict(self.conn.execute(select(Brand.name, Brand.id)).all())
        next_id = _next_id(self.conn, Brand)
        rows = []
        for name, _cats in BRANDS:
            if name not in brands:
                brands[name] = next_id
                rows.append({"id": next_id, "name": name})
                next_id += 1
        if rows:
            self.conn.execute(Brand.__table__.insert(), rows)
        self.brand_ids = brands
        self.report.brands = len(rows)
        self.brands_by_category: Dict[str, List[str]] = {c: [] for c in CATEGORIES}
        for name, cats in BRANDS:
            for cat in cats:
                self.brands_by_category[cat].append(name)

    # -- products & variants ------------------------------------------------------------
    def products(self) -> None:
        rng = self.rng
        n = self.config.products
        types = PRODUCT_TYPES
        weights = [t.weight for t in types]
        cum_weights = list(_accumulate(weights))
        pool = set(range(n)) if n <= POPULAR_POOL else set(rng.sample(range(n), POPULAR_POOL))
        self.pool_variants: List[_VariantInfo] = []
        self.product_types: List[int] = []  # per product index: index into PRODUCT_TYPES
        self.product_ids_start = _next_id(self.conn, Product)
        variant_id = _next_id(self.conn, Variant)
        existing_handles = set(self.conn.execute(select(Product.handle)).scalars())
        type_index = {t.name: i for i, t in enumerate(types)}
        products = _Batcher(self.conn, Product)
        variants = _Batcher(self.conn, Variant, products)
        handles = existing_handles
        for i in range(n):
            if i < len(ANCHORS):
                type_name, forced_colors, band = ANCHORS[i]
                ptype = TYPES_BY_NAME[type_name]
            else:
                ptype = rng.choices(types, cum_weights=cum_weights)[0]
                forced_colors, band = (), ptype.price
            self.product_types.append(type_index[ptype.name])
            product_id = self.product_ids_start + i
            brand = rng.choice(self.brands_by_category[ptype.category])
            material = rng.choice(ptype.materials)
            adj = rng.choice(ADJECTIVES)
            line = rng.choice(LINE_NAMES)
            pattern = rng.random()
            if ptype.category == "Electronics":
                title = f"{line} {rng.choice((100, 200, 300, 500, 700, 900))} {ptype.name}"
            elif pattern < 0.45 and len(material) < 16:
                title = f"{adj} {material.title()} {ptype.name}"
            elif pattern < 0.75:
                title = f"{line} {ptype.name}"
            else:
                title = f"{line} {adj} {ptype.name}"
            handle = slugify(f"{brand} {title}")
            if handle in handles:
                suffix = 2
                while f"{handle}-{suffix}" in handles:
                    suffix += 1
                handle = f"{handle}-{suffix}"
            handles.add(handle)

            gender = rng.choice(ptype.genders)
            # colours
            if forced_colors:
                colors = list(forced_colors)
            else:
                k = 1 if ptype.sizes != ONE_SIZE and rng.random() < 0.3 else rng.choice((1, 2, 2, 3, 3, 4))
                colors = rng.sample(ptype.colors, min(k, len(ptype.colors)))
            # sizes: a contiguous run of the type's size chart
            if len(ptype.sizes) > 1:
                run = rng.randint(min(4, len(ptype.sizes)), len(ptype.sizes))
                start = rng.randint(0, len(ptype.sizes) - run)
                sizes = ptype.sizes[start:start + run]
            else:
                sizes = ptype.sizes
            price = _price_cents(rng, *band)
            on_sale = rng.random() < 0.18
            compare_at = (price * rng.choice((120, 125, 130, 140, 150)) // 100 // 100) * 100 + 99 if on_sale else None
            grams = rng.randint(*ptype.grams)
            published = i < len(ANCHORS) or rng.random() >= 0.01

            use = rng.choice(ptype.uses)
            noun = ptype.name.lower()
            if ptype.name in PLURAL_TYPES:
                thing = f"a pair of {adj.lower()} {noun}"
            else:
                thing = f"{_article(adj)} {adj.lower()} {noun}"
            opening = rng.choice(OPENINGS).format(title=title, thing=thing, brand=brand, use=use, material=material)
            opening = opening[0].upper() + opening[1:]
            feats = rng.sample(ptype.features, min(2, len(ptype.features)))
            closing = rng.choice(CLOSINGS).format(brand=brand)
            material_line = f"Made from {material}." if material not in opening else ""
            color_line = f"Available in {_join_colors(colors)}."
            description = " ".join(p for p in (opening, *feats, material_line, color_line, closing) if p)
            tags = ", ".join(dict.fromkeys(
                [noun, ptype.category.lower(), material, gender, adj.lower(), *colors]
            ))
            created = self.now - timedelta(days=rng.randint(30, 730), seconds=rng.randint(0, 86399))
            products.add({
                "id": product_id, "handle": handle, "title": title, "description": description,
                "category_id": self.category_ids[ptype.category], "brand_id": self.brand_ids[brand],
                "product_type": ptype.name, "gender": gender, "material": material, "tags": tags,
                "image_url": f"/images/products/{handle}.svg", "published": published, "created_at": created,
            })
            in_pool = i in pool
            for c_index, color in enumerate(colors):
                for size in sizes:
                    stock = 0 if rng.random() < 0.12 else rng.randint(1, 60)
                    if forced_colors and c_index == 0 and size == sizes[len(sizes) // 2]:
                        stock = max(stock, 5)  # the demo's red pair is always available in a middle size
                    sku = f"SH{product_id:06d}-{color.upper()}-{slugify(size).upper()}"
                    variants.add({
                        "id": variant_id, "product_id": product_id, "sku": sku, "color": color, "size": size,
                        "price_cents": price, "compare_at_price_cents": compare_at, "stock": stock, "grams": grams,
                    })
                    if in_pool:
                        label = " / ".join(p for p in (color, size) if p)
                        self.pool_variants.append(
                            _VariantInfo(variant_id, title, label, price, ptype.category)
                        )
                    variant_id += 1
            variants.flush_if_full()
            products.flush_if_full()
            if i % 500 == 499:
                self.tick(500, "products")
        products.flush()
        variants.flush()
        self.tick(n % 500, "products")
        self.report.products = products.count
        self.report.variants = variants.count

    # -- customers ----------------------------------------------------------------------
    def customers(self) -> None:
        rng = self.rng
        n = self.config.customers
        start = _next_id(self.conn, Customer)
        existing = set(self.conn.execute(select(Customer.email)).scalars())
        emails = set(existing)
        batch = _Batcher(self.conn, Customer)
        self.customer_rows: List[dict] = []
        for i in range(n):
            if i == 0 and DEMO_CUSTOMER["email"] not in emails:
                row = dict(DEMO_CUSTOMER)
                prefs = {"size": "M", "shoe_size": "42", "liked_colors": ["red", "navy"],
                         "disliked_colors": ["yellow"], "favorite_categories": ["Shoes", "Apparel"],
                         "newsletter": True}
            else:
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                local = slugify(f"{first}.{last}").replace("-", ".")
                email = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
                counter = 2
                while email in emails:
                    email = f"{local}{counter}@{email.split('@')[1]}"
                    counter += 1
                row = {"first_name": first, "last_name": last, "email": email}
                row.update(self._address(rng))
                liked = rng.sample(COLORS, rng.randint(1, 3))
                disliked = rng.sample([c for c in COLORS if c not in liked], rng.randint(0, 2))
                prefs = {
                    "size": rng.choice(CLOTHING_SIZES[1:5]),
                    "shoe_size": rng.choice(SHOE_SIZES[2:10]),
                    "liked_colors": liked,
                    "disliked_colors": disliked,
                    "favorite_categories": rng.sample(CATEGORIES, rng.randint(1, 2)),
                    "newsletter": rng.random() < 0.6,
                }
            emails.add(row["email"])
            row.update({
                "id": start + i, "preferences": prefs,
                "created_at": self.now - timedelta(days=rng.randint(370, 1400), seconds=rng.randint(0, 86399)),
            })
            batch.add(row)
            batch.flush_if_full()
            self.customer_rows.append(row)
        batch.flush()
        self.tick(n, "customers")
        self.report.customers = batch.count

    def _address(self, rng: random.Random) -> dict:
        number = rng.randint(1, 9999)
        street = f"{rng.choice(STREETS)} {rng.choice(STREET_SUFFIXES)}"
        if rng.random() < 0.2:
            street += f", Apt {rng.randint(1, 30)}{rng.choice('ABCD')}"
        if rng.random() < 0.87:
            city, state, prefix = rng.choice(US_CITIES)
            return {
                "phone": f"+1 {rng.randint(201, 989)}-555-{rng.randint(100, 199):04d}",
                "address_line": f"{number} {street}", "city": f"{city}, {state}",
                "postcode": f"{prefix}{rng.randint(0, 99):02d}", "country": "US",
            }
        country = rng.choice(INTERNATIONAL)
        letters = "ABCDEFGHJKLMNPRSTUVWXY"
        if country == "GB":
            return {"phone": f"+44 20 7946 0{rng.randint(100, 999)}", "address_line": f"{number % 200 + 1} {street}",
                    "city": "London", "country": "GB",
                    "postcode": f"{rng.choice(('N', 'E', 'SE', 'SW', 'W', 'NW'))}{rng.randint(1, 19)} "
                                f"{rng.randint(1, 9)}{rng.choice(letters)}{rng.choice(letters)}"}
        if country == "DE":
            return {"phone": f"+49 30 {rng.randint(1000000, 9999999)}", "address_line": f"{street} {number % 120 + 1}",
                    "city": "Berlin", "postcode": f"{rng.randint(10115, 14199)}", "country": "DE"}
        if country == "CA":
            return {"phone": f"+1 416-555-{rng.randint(100, 199):04d}", "address_line": f"{number} {street}",
                    "city": "Toronto, ON", "country": "CA",
                    "postcode": f"M{rng.randint(1, 9)}{rng.choice(letters)} {rng.randint(1, 9)}"
                                f"{rng.choice(letters)}{rng.randint(1, 9)}"}
        return {"phone": f"+31 20 {rng.randint(1000000, 9999999)}", "address_line": f"{street} {number % 300 + 1}",
                "city": "Amsterdam", "postcode": f"10{rng.randint(11, 99)} {rng.choice(letters)}{rng.choice(letters)}",
                "country": "NL"}

    # -- reviews ------------------------------------------------------------------------
    def reviews(self) -> None:
        rng = self.rng
        n_products = self.config.products
        if not n_products:
            return
        start = _next_id(self.conn, Review)
        batch = _Batcher(self.conn, Review)
        done = 0
        for i in range(self.config.reviews):
            # Skewed: a few products collect many reviews, most have a handful.
            index = min(n_products - 1, int(n_products * rng.random() ** 2.0))
            ptype = PRODUCT_TYPES[self.product_types[index]]
            rating = rng.choices((5, 4, 3, 2, 1), weights=(46, 28, 12, 8, 6))[0]
            if self.customer_rows and rng.random() < 0.75:
                customer = rng.choice(self.customer_rows)
                customer_id = customer["id"]
                author = f"{customer['first_name']} {customer['last_name'][0]}."
            else:
                customer_id = None
                author = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)[0]}."
            body = rng.choice(REVIEW_BODIES[rating]).format(
                noun=ptype.name.lower(), use=rng.choice(ptype.uses), color=rng.choice(ptype.colors)
            )
            batch.add({
                "id": start + i, "product_id": self.product_ids_start + index, "customer_id": customer_id,
                "author_name": author, "rating": rating, "title": rng.choice(REVIEW_TITLES[rating]), "body": body,
                "created_at": self.now - timedelta(days=rng.randint(1, 365), seconds=rng.randint(0, 86399)),
            })
            batch.flush_if_full()
            if i % 1000 == 999:
                self.tick(1000, "reviews")
                done += 1000
        batch.flush()
        self.tick(self.config.reviews - done, "reviews")
        self.report.reviews = batch.count

    # -- discount codes -----------------------------------------------------------------
    def discount_codes(self) -> None:
        now = self.now
        start = _next_id(self.conn, DiscountCode)
        existing = set(self.conn.execute(select(DiscountCode.code)).scalars())
        demo_customer_id = self.customer_rows[0]["id"] if self.customer_rows else None
        codes = [
            dict(code="WELCOME10", description="10% off your first order", kind="percent", value=10,
                 starts_at=now - timedelta(days=400), ends_at=None, public=True, once_per_customer=True),
            dict(code="SAVE20", description="20% off everything, limited time", kind="percent", value=20,
                 starts_at=now - timedelta(days=30), ends_at=now + timedelta(days=45), usage_limit=1000,
                 public=True, once_per_customer=True),
            dict(code="SHOES15", description="15% off all shoes", kind="percent", value=15,
                 category_id=self.category_ids["Shoes"], starts_at=now - timedelta(days=60),
                 ends_at=now + timedelta(days=90), public=True, once_per_customer=False),
            dict(code="FREESHIP", description="Free standard shipping on orders over $50", kind="free_shipping",
                 value=0, min_spend_cents=5000, starts_at=now - timedelta(days=365), ends_at=None, public=True,
                 once_per_customer=False),
            dict(code="TAKE25", description="$25 off when you spend $150 or more", kind="fixed", value=2500,
                 min_spend_cents=15000, starts_at=now - timedelta(days=200), ends_at=None, public=True,
                 once_per_customer=True),
            dict(code="SPRING25", description="25% off the spring sale (ended)", kind="percent", value=25,
                 starts_at=now - timedelta(days=160), ends_at=now - timedelta(days=100), public=True,
                 once_per_customer=True),
            dict(code="ALEX15", description="15% off, a thank-you for a loyal customer", kind="percent", value=15,
                 starts_at=now - timedelta(days=90), ends_at=now + timedelta(days=180), public=False,
                 customer_id=demo_customer_id, usage_limit=1, once_per_customer=True),
        ]
        rows = []
        for offset, code in enumerate(c for c in codes if c["code"] not in existing):
            row = {"min_spend_cents": 0, "category_id": None, "usage_limit": None, "customer_id": None,
                   "times_used": 0}
            row.update(code)
            row["id"] = start + offset
            rows.append(row)
        self.codes = rows
        self.report.discount_codes = len(rows)

    def _discount_for(self, rng, placed_at, lines, subtotal) -> Tuple[Optional[dict], int, bool]:
        """(code row, discount cents, free shipping) for an order that uses a code, else (None, 0, False)."""
        if rng.random() > 0.15 or not self.codes:
            return None, 0, False
        valid = [
            c for c in self.codes
            if (c["starts_at"] is None or c["starts_at"] <= placed_at)
            and (c["ends_at"] is None or placed_at < c["ends_at"])
            and subtotal >= c["min_spend_cents"]
            and c["customer_id"] is None  # personal codes stay unused for their owner
            and (c["usage_limit"] is None or c["times_used"] < c["usage_limit"])
        ]
        if not valid:
            return None, 0, False
        code = rng.choice(valid)
        if code["kind"] == "free_shipping":
            return code, 0, True
        if code["kind"] == "fixed":
            return code, min(code["value"], subtotal), False
        base = subtotal
        if code["category_id"] is not None:
            base = sum(q * v.price_cents for v, q in lines if v.category == "Shoes")
            if not base:
                return None, 0, False
        return code, base * code["value"] // 100, False

    # -- orders, returns, refunds -------------------------------------------------------
    def orders(self) -> None:
        rng = self.rng
        n = self.config.orders
        if not n or not self.pool_variants:
            self._insert_codes()
            return
        statuses = list(ORDER_STATUSES)
        weights = {"pending_payment": 3, "paid": 4, "packed": 3, "shipped": 6, "delivered": 55, "cancelled": 8,
                   "return_requested": 4, "returned": 7, "refunded": 10}
        age_days = {"pending_payment": (0, 1), "paid": (0, 2), "packed": (1, 3), "shipped": (2, 6),
                    "delivered": (8, 364), "cancelled": (1, 364), "return_requested": (10, 45),
                    "returned": (20, 364), "refunded": (25, 364)}
        planned = []
        for i in range(n):
            if i < len(statuses):
                status = statuses[i]
                customer = self.customer_rows[0] if self.customer_rows else None
            else:
                status = rng.choices(statuses, weights=[weights[s] for s in statuses])[0]
                customer = None
                if self.customer_rows and rng.random() >= 0.05:
                    # Returning customers: a quarter of them place most orders.
                    pool = self.customer_rows
                    customer = pool[int(len(pool) * rng.random() ** 1.7)]
            low, high = age_days[status]
            placed_at = self.now - timedelta(days=rng.randint(low, high), seconds=rng.randint(1, 86399))
            planned.append((placed_at, i, status, customer))
        planned.sort(key=lambda p: (p[0], p[1]))

        order_id = _next_id(self.conn, Order)
        item_id = _next_id(self.conn, OrderItem)
        return_id = _next_id(self.conn, Return)
        return_item_id = _next_id(self.conn, ReturnItem)
        refund_id = _next_id(self.conn, Refund)
        last_number = self.conn.execute(select(func.max(Order.number))).scalar()
        number = int(last_number.split("-")[1]) + 1 if last_number and last_number.startswith("SH-") else 100001
        last_rma = self.conn.execute(select(func.max(Return.rma_number))).scalar()
        rma = int(last_rma.split("-")[1]) + 1 if last_rma and last_rma.startswith("RMA-") else 200001

        self._insert_codes()
        orders = _Batcher(self.conn, Order)
        items = _Batcher(self.conn, OrderItem, orders)
        returns = _Batcher(self.conn, Return, orders)
        return_items = _Batcher(self.conn, ReturnItem, returns, items)
        refunds = _Batcher(self.conn, Refund, returns)
        by_status = {s: 0 for s in statuses}
        variants = self.pool_variants
        lookup = {v.id: v for v in variants}
        for done, (placed_at, _i, status, customer) in enumerate(planned, 1):
            k = rng.choices((1, 2, 3, 4), weights=(45, 30, 17, 8))[0]
            chosen = {variants[int(len(variants) * rng.random() ** 1.5)].id: None for _ in range(k)}
            lines = [(lookup[vid], rng.choices((1, 2, 3), weights=(80, 15, 5))[0]) for vid in chosen]
            subtotal = sum(q * v.price_cents for v, q in lines)
            customer_id = customer["id"] if customer else None
            code, discount, free_shipping = self._discount_for(rng, placed_at, lines, subtotal)
            if code is not None and status != "cancelled":
                code["times_used"] += 1
            method = "express" if rng.random() < 0.15 else "standard"
            if method == "express":
                shipping = EXPRESS_SHIPPING_CENTS
            elif free_shipping or subtotal - discount >= FREE_SHIPPING_OVER_CENTS:
                shipping = 0
            else:
                shipping = STANDARD_SHIPPING_CENTS
            tax = ((subtotal - discount) * TAX_RATE_PERCENT + 50) // 100
            total = subtotal - discount + shipping + tax

            if customer:
                email = customer["email"]
                ship = {"shipping_name": f"{customer['first_name']} {customer['last_name']}",
                        "shipping_address": customer["address_line"], "shipping_city": customer["city"],
                        "shipping_postcode": customer["postcode"], "shipping_country": customer["country"]}
            else:
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                email = f"guest.{slugify(first)}{rng.randint(100, 9999)}@example.net"
                addr = self._address(rng)
                ship = {"shipping_name": f"{first} {last}", "shipping_address": addr["address_line"],
                        "shipping_city": addr["city"], "shipping_postcode": addr["postcode"],
                        "shipping_country": addr["country"]}

            carrier = tracking = estimated = delivered_at = None
            updated_at = placed_at + timedelta(minutes=rng.randint(1, 90))
            shipped_states = ("shipped", "delivered", "return_requested", "returned", "refunded")
            if status in shipped_states:
                carrier = "DHL" if ship["shipping_country"] != "US" else rng.choice(CARRIERS_US)
                tracking = self._tracking(rng, carrier)
                shipped_at = placed_at + timedelta(hours=rng.randint(18, 40))
                estimated = (shipped_at + timedelta(days=rng.randint(3, 6))).date()
                updated_at = shipped_at
                if status == "shipped" and estimated <= self.today:
                    estimated = self.today + timedelta(days=rng.randint(1, 3))
            if status in ("delivered", "return_requested", "returned", "refunded"):
                delivered_at = placed_at + timedelta(days=rng.randint(3, 7), hours=rng.randint(0, 8))
                updated_at = delivered_at
            if status == "cancelled":
                updated_at = placed_at + timedelta(hours=rng.randint(1, 20))

            this_order = order_id
            order_row = {
                "id": this_order, "number": f"SH-{number}", "customer_id": customer_id, "email": email,
                "status": status, **ship, "shipping_method": method, "carrier": carrier,
                "tracking_number": tracking, "estimated_delivery": estimated, "delivered_at": delivered_at,
                "subtotal_cents": subtotal, "discount_cents": discount, "shipping_cents": shipping,
                "tax_cents": tax, "total_cents": total, "discount_code_id": code["id"] if code else None,
                "source": "chat" if rng.random() < 0.1 else "web", "conversation_id": None,
                "placed_at": placed_at, "updated_at": updated_at,
            }
            order_items = []
            for variant, quantity in lines:
                items.add({"id": item_id, "order_id": this_order, "variant_id": variant.id,
                           "product_title": variant.product_title, "variant_label": variant.label,
                           "quantity": quantity, "unit_price_cents": variant.price_cents})
                order_items.append((item_id, variant, quantity))
                item_id += 1

            if status in ("return_requested", "returned", "refunded"):
                returned = rng.sample(order_items, rng.randint(1, len(order_items)))
                created = delivered_at + timedelta(days=rng.randint(1, 3), hours=rng.randint(0, 10))
                resolution = "refund" if status == "refunded" or rng.random() < 0.85 else "store_credit"
                return_status = {"return_requested": "requested", "returned": "received",
                                 "refunded": "refunded"}[status]
                returns.add({"id": return_id, "rma_number": f"RMA-{rma}", "order_id": this_order,
                             "status": return_status, "reason": rng.choice(RETURN_REASONS),
                             "resolution": resolution, "created_at": created})
                value = 0
                for oi_id, variant, quantity in returned:
                    qty = rng.randint(1, quantity)
                    value += qty * variant.price_cents
                    return_items.add({"id": return_item_id, "return_id": return_id, "order_item_id": oi_id,
                                      "quantity": qty})
                    return_item_id += 1
                # The shopper gets back what they paid for those items: discount and tax share included.
                amount = value * (subtotal - discount + tax) // subtotal if subtotal else 0
                completed = created + timedelta(days=rng.randint(5, 9)) if status == "refunded" else None
                refunds.add({"id": refund_id, "order_id": this_order, "return_id": return_id,
                             "amount_cents": amount, "status": "completed" if completed else "pending",
                             "method": "store_credit" if resolution == "store_credit" else "original_payment",
                             "created_at": created, "completed_at": completed})
                if completed:
                    order_row["updated_at"] = completed
                elif status == "returned":
                    order_row["updated_at"] = created + timedelta(days=rng.randint(2, 4))
                else:
                    order_row["updated_at"] = created
                return_id += 1
                refund_id += 1
                rma += 1
            orders.add(order_row)
            for batch in (return_items, refunds, items, returns, orders):
                batch.flush_if_full()
            by_status[status] += 1
            order_id += 1
            number += 1
            if done % 500 == 0:
                self.tick(500, "orders")
        for batch in (orders, items, returns, return_items, refunds):
            batch.flush()
        for code in self.codes:
            if code["times_used"]:
                self.conn.execute(
                    DiscountCode.__table__.update()
                    .where(DiscountCode.__table__.c.id == code["id"])
                    .values(times_used=code["times_used"])
                )
        self.tick(n - (n // 500) * 500, "orders")
        self.report.orders = orders.count
        self.report.order_items = items.count
        self.report.returns = returns.count
        self.report.refunds = refunds.count
        self.report.orders_by_status = by_status

    def _insert_codes(self) -> None:
        if self.codes:
            self.conn.execute(DiscountCode.__table__.insert(), self.codes)

    @staticmethod
    def _tracking(rng: random.Random, carrier: str) -> str:
        digits = lambda k: "".join(rng.choice("0123456789") for _ in range(k))  # noqa: E731
        if carrier == "UPS":
            return "1Z" + "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(6)) + digits(10)
        if carrier == "FedEx":
            return digits(12)
        if carrier == "USPS":
            return "9400" + digits(18)
        return digits(10)


def _accumulate(values: Iterable[int]) -> Iterable[int]:
    total = 0
    for value in values:
        total += value
        yield total


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def product_count(engine: Engine) -> int:
    if not inspect(engine).has_table(Product.__tablename__):
        return 0
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Product.__table__)).scalar_one()


def reset_store(engine: Engine) -> None:
    """Drop and recreate every shop table: all shop data is lost."""
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)


def _fix_sequences(conn: Connection) -> None:
    """Rows were inserted with explicit ids: move PostgreSQL's sequences past them."""
    if conn.dialect.name != "postgresql":
        return
    for model in (Category, Brand, Product, Variant, Customer, Review, DiscountCode, Order, OrderItem,
                  Return, ReturnItem, Refund):
        table = model.__tablename__
        conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        ))


def seed_store(engine: Engine, config: Optional[SeedConfig] = None, *, if_empty: bool = False,
               progress: bool = True) -> SeedReport:
    """Generate the demo store into `engine` in one transaction.

    Refuses (raises SeedError) when the catalog already has products, unless `if_empty` is set,
    in which case it does nothing and says so in the report.
    """
    import time as _time

    from tqdm import tqdm

    config = config or SeedConfig()
    Base.metadata.create_all(engine)
    existing = product_count(engine)
    if existing:
        message = f"the catalog already has {existing} products"
        if if_empty:
            return SeedReport(seeded=False, message=message + "; nothing to do")
        raise SeedError(message + ": use --reset to replace the store or --if-empty to skip")
    started = _time.monotonic()
    total = config.products + config.customers + config.reviews + config.orders
    with tqdm(total=total, unit="rows", desc="seeding", disable=not progress, leave=False,
              dynamic_ncols=True) as bar:
        def tick(count: int, stage: str) -> None:
            if count > 0:
                bar.set_description(stage, refresh=False)
                bar.update(count)

        with engine.begin() as conn:
            generator = _Generator(conn, config, tick)
            generator.categories_and_brands()
            generator.products()
            generator.customers()
            generator.reviews()
            generator.discount_codes()
            generator.orders()
            _fix_sequences(conn)
    report = generator.report
    report.seconds = _time.monotonic() - started
    return report


class SeedError(RuntimeError):
    """The store cannot be seeded as asked (e.g. it already has products)."""


def store_counts(engine: Engine) -> Dict[str, object]:
    """Counts of the main tables and orders by status; zeros for a database without the schema."""
    if not inspect(engine).has_table(Product.__tablename__):
        return {}
    counts: Dict[str, object] = {}
    with engine.connect() as conn:
        for name, model in (("categories", Category), ("brands", Brand), ("products", Product),
                            ("variants", Variant), ("reviews", Review), ("customers", Customer),
                            ("discount_codes", DiscountCode), ("orders", Order), ("returns", Return),
                            ("refunds", Refund)):
            counts[name] = conn.execute(select(func.count()).select_from(model.__table__)).scalar_one()
        rows = dict(conn.execute(select(Order.status, func.count()).group_by(Order.status)).all())
        counts["orders_by_status"] = {s: rows.get(s, 0) for s in ORDER_STATUSES}
        counts["variants_out_of_stock"] = conn.execute(
            select(func.count()).select_from(Variant.__table__).where(Variant.stock == 0)
        ).scalar_one()
    return counts
