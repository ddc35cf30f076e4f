"""Card data is masked in shoppers' messages before Rasa sees them (channels/card_masking.py)."""
import pytest

from channels.card_masking import mask_card_data, passes_luhn


@pytest.mark.parametrize("typed, stored", [
    ("my card is 4242 4242 4242 4242", "my card is [card number hidden]"),
    ("4000-0000-0000-0002 declined", "[card number hidden] declined"),
    ("amex 378282246310005 ok?", "amex [card number hidden] ok?"),
    ("expires 12/29", "expires [expiry date hidden]"),
    ("exp 3/2031", "exp [expiry date hidden]"),
    ("the cvv is 737", "the cvv is [security code hidden]"),
    ("Security code: 1234", "Security code: [security code hidden]"),
])
def test_card_numbers_expiry_dates_and_security_codes_are_masked(typed, stored):
    assert mask_card_data(typed) == stored


@pytest.mark.parametrize("typed", [
    "where is order 1234567890123",    # 13 digits, fails the checksum: an order number, kept
    "4242 4242 4242 4241",             # a typo in a card number is no card number
    "size 42, 2 pairs under $120",
    "my code is 737",                  # no CVV wording: a discount or a postcode, kept
    "/rate_help{\"handoff_rating\": \"5\"}",
    "",
])
def test_ordinary_messages_are_left_alone(typed):
    assert mask_card_data(typed) == typed


def test_the_luhn_check():
    assert passes_luhn("4242424242424242")
    assert not passes_luhn("4242424242424241")
