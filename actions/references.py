"""Which product a shopper means: "the second one", "the blue one", "that jacket", "it"."""
from typing import List, Optional, Sequence, Text

from rasa_sdk import Tracker

from shop.catalog import ProductSummary

POSITION_WORDS = {"1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6, "8": 7, "9": 8, "10": 9}


def _entity(tracker: Tracker, name: Text) -> Optional[Text]:
    value = next(tracker.get_latest_entity_values(name), None)
    return str(value).strip().lower() if value else None


def position_index(position: Optional[Text], count: int) -> Optional[int]:
    if not position or not count:
        return None
    if position in ("last", "-1"):
        return count - 1
    index = POSITION_WORDS.get(position)
    return index if index is not None and index < count else None


def _matches_description(product: ProductSummary, color: Optional[Text], category: Optional[Text]) -> bool:
    if color and color not in (c.lower() for c in product.colors):
        return False
    if category:
        stem = category.rstrip("s")
        haystack = f"{product.title} {product.category}".lower()
        if stem not in haystack:
            return False
    return True


def resolve_reference(
    tracker: Tracker, shown: Sequence[ProductSummary], by_description: bool = True
) -> Optional[Text]:
    """The handle of the product the latest message means, or None when it is unclear.

    Position wins ("the second one"); then a description that fits a shown product ("the blue
    one", "that jacket") unless the colour describes a wanted variant instead ("in black?");
    then the product talked about last ("it"); then the only product shown.
    """
    index = position_index(_entity(tracker, "position"), len(shown))
    if index is not None:
        return shown[index].handle
    if by_description:
        color, category = _entity(tracker, "color"), _entity(tracker, "category")
        if color or category:
            fitting: List[ProductSummary] = [p for p in shown if _matches_description(p, color, category)]
            if fitting:
                return fitting[0].handle
    current = tracker.get_slot("current_product")
    if current:
        return current
    if len(shown) == 1:
        return shown[0].handle
    return None
