"""Words, stems and colour families: the one place that decides how catalog text and queries are compared.

The search index stores *normalised* text (lower case, accents folded, light English plural
stemming), and every query goes through the very same functions, so SQLite (FTS5) and
PostgreSQL (tsvector with the 'simple' configuration) see identical tokens and behave alike:
"dresses" and "dress" both become `dress`, "hoodies" and "hoodie" both become `hoody`, and "men"
stays `men`, a different word from `women` (whole-word matching).
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Dict, Iterable, List, Optional

_WORD = re.compile(r"[^\W_]+")
_POSSESSIVE = re.compile(r"[\u2019']s\b")
MAX_WORD_LENGTH = 40

# Words a shopper types around what they want; dropped from queries that have other words.
STOPWORDS = frozenset(
    "a an and any are at be by can do does find for from get give have i im in is it looking me my need "
    "of on or please show some that the this to want with you your".split()
)

# Words that are plural in form but name one thing: never singularised for lookups.
PLURALIA_TANTUM = frozenset(
    "jeans shorts leggings pyjamas pajamas sunglasses glasses chinos trousers pants tights overalls "
    "joggers briefs boxers electronics scissors headphones earbuds goggles binoculars".split()
)
# Nouns with no plural worth offering ("beauties", "homes" as a shop category).
UNCOUNTABLE = frozenset(
    "apparel beauty home clothing footwear jewelry jewellery luggage furniture denim equipment gear "
    "skincare haircare makeup merchandise homeware kitchenware stationery decor lingerie".split()
)


def fold(text: str) -> str:
    """Lower case without accents: 'Crème Brûlée' -> 'creme brulee'."""
    if not text:
        return ""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> List[str]:
    """The words of a text, folded; possessive 's dropped ("men's" -> "men")."""
    folded = _POSSESSIVE.sub("", fold(text))
    return [w[:MAX_WORD_LENGTH] for w in _WORD.findall(folded)]


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light, predictable English plural stemmer. Applied to catalog text and queries alike."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"  # accessories -> accessory, hoodies -> hoody
    if word.endswith("ie"):
        return word[:-2] + "y"  # hoodie -> hoody (so that it meets "hoodies")
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]  # dresses -> dress, watches -> watch
    if word.endswith(("ss", "us", "is")):
        return word  # dress, status, analysis
    if word.endswith("s"):
        return word[:-1]  # sneakers -> sneaker, shoes -> shoe, jeans -> jean
    return word


def stems(text: str) -> List[str]:
    return [stem(w) for w in words(text)]


def normalise(text: str) -> str:
    """The text as the index stores it: stems separated by single spaces."""
    if len(text) <= 80:
        return _normalise_short(text)
    return " ".join(stems(text))


@lru_cache(maxsize=100_000)
def _normalise_short(text: str) -> str:
    return " ".join(stems(text))


def key(text: str) -> str:
    """A case- and accent-insensitive key for exact comparisons of names (brands, colours, sizes)."""
    return " ".join(fold(text).split())


def phrase_key(text: str) -> str:
    """Key for category and product-type names: 'Running Shoes' and 'running shoe' -> 'running shoe'."""
    return normalise(text)


# --------------------------------------------------------------------------------------------
# Singular and plural forms (for NLU lookup tables)
# --------------------------------------------------------------------------------------------

_IRREGULAR_PLURALS = {"scarf": "scarves", "knife": "knives", "shelf": "shelves", "leaf": "leaves",
                      "man": "men", "woman": "women", "child": "children", "foot": "feet", "wolf": "wolves"}
_IRREGULAR_SINGULARS = {plural: singular for singular, plural in _IRREGULAR_PLURALS.items()}


def _plural_word(word: str) -> str:
    lower = word.lower()
    if lower in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[lower]
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _singular_word(word: str) -> str:
    lower = word.lower()
    if lower in _IRREGULAR_SINGULARS:
        return _IRREGULAR_SINGULARS[lower]
    if lower.endswith("ies") and len(lower) > 4 and lower not in ("hoodies", "beanies", "cookies", "movies"):
        return word[:-3] + "y"
    if lower.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]
    if lower.endswith("s") and not lower.endswith(("ss", "us", "is")) and len(lower) > 3:
        return word[:-1]
    return word


def number_forms(name: str) -> List[str]:
    """'Running Shoes' -> ['running shoe', 'running shoes']; 'Jeans' -> ['jeans']; 'Apparel' -> ['apparel']."""
    name = " ".join(name.split()).lower()
    if not name:
        return []
    head_start = max(name.rfind(" "), name.rfind("-")) + 1
    prefix, head = name[:head_start], name[head_start:]
    forms = {name}
    if head and head.isalpha() and head not in PLURALIA_TANTUM and head not in UNCOUNTABLE and not head.endswith("wear"):
        singular = _singular_word(head)
        if singular != head:
            forms.add(prefix + singular)
        else:
            forms.add(prefix + _plural_word(head))
    return sorted(forms)


# --------------------------------------------------------------------------------------------
# Colour families
# --------------------------------------------------------------------------------------------

_FAMILY_OF: Dict[str, str] = {}
for _family, _names in {
    "black": "black jet onyx ebony raven noir",
    "white": "white ivory cream snow chalk pearl offwhite alabaster",
    "grey": "grey gray silver slate graphite ash charcoal heather gunmetal pewter smoke anthracite",
    "red": "red burgundy maroon crimson scarlet wine cherry ruby oxblood bordeaux brick cardinal",
    "pink": "pink rose blush fuchsia magenta coral salmon raspberry",
    "orange": "orange rust peach apricot tangerine amber terracotta copper",
    "yellow": "yellow mustard gold golden lemon ochre canary saffron",
    "green": "green olive khaki sage mint emerald forest lime jade moss pine bottle teal",
    "blue": "blue navy cobalt indigo denim sky azure turquoise aqua cyan petrol sapphire royal cornflower",
    "purple": "purple violet lilac lavender plum mauve aubergine amethyst grape",
    "brown": "brown tan chocolate camel cognac coffee mocha chestnut walnut taupe espresso caramel tobacco",
    "beige": "beige sand oatmeal nude ecru stone natural biscuit champagne",
}.items():
    for _name in _names.split():
        _FAMILY_OF[_name] = _family

COLOR_FAMILIES = tuple(sorted(set(_FAMILY_OF.values())))


@lru_cache(maxsize=10_000)
def color_family(color: str) -> Optional[str]:
    """The basic colour a colour name belongs to: 'navy' -> 'blue', 'Light Blue' -> 'blue', 'teal' -> 'green'.

    The last known colour word decides ("rose gold" -> yellow); None for names with no known word.
    """
    for word in reversed(words(color)):
        family = _FAMILY_OF.get(word)
        if family:
            return family
    return None


def family_words(colors: Iterable[str]) -> List[str]:
    """The family names of some colours, for the index's colour column ('navy' also matches 'blue')."""
    return sorted({f for f in (color_family(c) for c in colors) if f})
