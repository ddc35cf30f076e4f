"""Card data typed into the chat is masked before Rasa sees it, so no tracker, log or action holds it.

Masked: card numbers (13-19 digits, spaces or dashes allowed, valid Luhn checksum), expiry dates
(MM/YY, MM/YYYY) and, in a message that talks about a CVV / CVC / security code, any 3-4 digit
number. Order numbers and quantities pass through: they fail the checksum or are too short.
"""
import re
from typing import Optional

CARD_NUMBER_MASK = "[card number hidden]"
EXPIRY_MASK = "[expiry date hidden]"
SECURITY_CODE_MASK = "[security code hidden]"

_CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_EXPIRY = re.compile(r"(?<![\d/])(0?[1-9]|1[0-2])\s?/\s?(\d{2}|20\d{2})(?![\d/])")
_SECURITY_CODE_WORDS = re.compile(r"\b(cvv2?|cvc2?|csc|cid|security\s+code|card\s+code|code\s+on\s+the\s+back)\b",
                                  re.IGNORECASE)
_THREE_OR_FOUR_DIGITS = re.compile(r"(?<!\d)\d{3,4}(?!\d)")


def passes_luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_card_number(match: "re.Match") -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and passes_luhn(digits):
        return CARD_NUMBER_MASK
    return match.group(0)


def mask_card_data(text: Optional[str]) -> Optional[str]:
    if not text:
        return text
    masked = _CARD_CANDIDATE.sub(_mask_card_number, text)
    masked = _EXPIRY.sub(EXPIRY_MASK, masked)
    if _SECURITY_CODE_WORDS.search(masked):
        masked = _THREE_OR_FOUR_DIGITS.sub(SECURITY_CODE_MASK, masked)
    return masked
