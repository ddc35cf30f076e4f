"""Which shopper messages count as strong frustration (shop/frustration.py), and which stay ordinary."""
import pytest

from shop.frustration import detect_frustration


@pytest.mark.parametrize("text, signals", [
    ("this is useless", ("insult",)),
    ("you're a stupid bot", ("insult",)),
    ("worst service ever", ("insult",)),
    ("honestly, you are the worst", ("insult",)),
    ("what a waste of time", ("insult",)),
    ("wtf is this", ("profanity",)),
    ("this shit never works", ("profanity",)),
    ("WHERE IS MY ORDER!!!", ("shouting", "exclamations")),
    ("I NEED HELP NOW?!", ("shouting", "exclamations")),
])
def test_a_strongly_frustrated_message_is_recognised_with_its_signals(text, signals):
    assert detect_frustration(text).signals == signals


@pytest.mark.parametrize("text", [
    "show me red sneakers under $80",
    "what is the worst rated tent you sell",  # a question about products, not about the help
    "WHERE IS MY ORDER",  # shouting alone
    "where is my order???",
    "really?!",
    "I need a USB cable",  # capitals, but not shouting
    "garbage bags, please",
    "great, thanks!! bye!",
    "",
])
def test_ordinary_messages_are_not_frustration(text):
    assert detect_frustration(text) is None


def test_the_same_message_a_third_time_in_a_row_is_frustration_a_second_time_only_with_another_sign():
    assert detect_frustration("red sneakers", ["red sneakers"]) is None
    assert detect_frustration("Red sneakers?", ["red sneakers", "red  sneakers"]).signals == ("repeated_three_times",)
    assert detect_frustration("red sneakers!!!", ["red sneakers"]).signals == ("exclamations", "repeated")
    # Only the latest messages in a row count: something else in between starts again.
    assert detect_frustration("red sneakers", ["red sneakers", "hi", "red sneakers"]) is None
