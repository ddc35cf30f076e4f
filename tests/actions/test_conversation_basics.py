

from actions.fallback import ActionDefaultAskAffirmation, ActionDefaultFallback
from actions.greet import ActionGreet
from tests.actions.trackers import run, tracker_for


def test_greeting_names_the_shop(monkeypatch):
    monkeypatch.setenv("SHOP_NAME", "Bright Threads")
    messages, _ = run(ActionGreet(), tracker_for("hi", "greet"))
    assert messages[0]["text"].startswith("Hi, welcome to Bright Threads!")


def test_fallback_offers_the_likeliest_meaning_in_plain_words():
    tracker = tracker_for(
        "sneakrs maybe", "nlu_fallback",
        intent_ranking=[
            {"name": "nlu_fallback", "confidence": 0.5},
            {"name": "search_product", "confidence": 0.4},
            {"name": "greet", "confidence": 0.1},
        ],
    )
    messages, _ = run(ActionDefaultAskAffirmation(), tracker)
    assert messages[0]["text"] == "Sorry, I'm not sure I understood. Did you want to search for a product?"
    assert [b["payload"] for b in messages[0]["buttons"]] == ["/search_product", "/out_of_scope"]


def test_final_fallback_explains_and_forgets_the_message():
    messages, events = run(ActionDefaultFallback(), tracker_for("???", "nlu_fallback"))
    assert "I'm still not sure what you mean" in messages[0]["text"]
    assert events[0]["event"] == "rewind"
