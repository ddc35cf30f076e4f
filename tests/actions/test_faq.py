"""Shop FAQ answers come from the policy file: editing the file changes the answer."""
import pytest

from actions.faq import ActionAnswerFaq
from tests.actions.trackers import run
from tests.actions.trackers import entity, tracker_for


def answer(text, intent, *entities):
    messages, events = run(ActionAnswerFaq(), tracker_for(text, intent, list(entities)))
    assert events == []
    return messages[0]["text"]


@pytest.mark.parametrize("intent, expected", [
    ("return_policy", "within 30 days of delivery"),
    ("delivery_time", "business days"),
    ("shipping_options", "Standard shipping costs $5.99 (free on orders over $75.00)"),
    ("payment_methods", "PayPal"),
    ("contact_info", "support@"),
    ("create_account", "http://shop.test/account/register"),
    ("recover_password", "http://shop.test/account/recover"),
])
def test_every_faq_intent_is_answered_from_the_policy_file(shop_engine, intent, expected):
    assert expected in answer("question", intent)


def test_delivery_time_narrowed_by_region_and_method(shop_engine):
    reply = answer("how long does express to canada take", "delivery_time",
                   entity("shipping_method", "express"), entity("region", "Canada"))

    assert reply.startswith("Express delivery to Canada takes 3-6 business days.")


def test_an_edited_policy_file_changes_the_answer(shop_engine, tmp_path, monkeypatch):
    from shop.policy import DEFAULT_POLICY_FILE

    edited = tmp_path / "policies.yml"
    edited.write_text(DEFAULT_POLICY_FILE.read_text().replace("window_days: 30", "window_days: 45"))
    monkeypatch.setenv("SHOP_POLICY_FILE", str(edited))

    assert "within 45 days of delivery" in answer("return policy?", "return_policy")
