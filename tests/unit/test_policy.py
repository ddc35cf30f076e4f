"""The policy file: one editable source, checked on load, driving both the answers and the rules."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shop import seed
from shop.policy import (
    DEFAULT_POLICY_FILE,
    FAQ_TOPICS,
    PolicyError,
    UnknownTopic,
    faq_answer,
    load_policy,
    return_policy_text,
)


@pytest.fixture
def default_data() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))


def write(tmp_path: Path, data, name: str = "policies.yml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# -- the shipped file --------------------------------------------------------------------------

def test_the_shipped_policy_matches_the_shop_constants():
    p = load_policy()
    assert p.returns.window_days == 30
    assert "Beauty" in p.returns.final_sale.categories and "clearance" in p.returns.final_sale.tags
    assert p.shipping.methods["standard"].cost_cents == seed.STANDARD_SHIPPING_CENTS == 599
    assert p.shipping.methods["express"].cost_cents == seed.EXPRESS_SHIPPING_CENTS == 1299
    assert p.shipping.free_shipping_over_cents == seed.FREE_SHIPPING_OVER_CENTS == 7500
    # every country and carrier the demo data uses is covered
    assert set(seed.INTERNATIONAL) | {"US"} <= set(p.shipping.countries)
    for carrier in (*seed.CARRIERS_US, "DHL"):
        assert p.tracking_url(carrier, "ABC123").startswith("https://")
    assert p.refunds.method == "the original payment method"


def test_shipping_costs_follow_the_threshold():
    s = load_policy().shipping
    assert s.shipping_cost_cents("standard", 7499) == 599
    assert s.shipping_cost_cents("standard", 7500) == 0
    assert s.shipping_cost_cents("standard", 1000, free_shipping_code=True) == 0
    assert s.shipping_cost_cents("express", 50000) == 1299


@pytest.mark.parametrize("region, method, expected", [
    ("US", "standard", "Standard delivery to the United States takes 3-5 business days."),
    ("usa", "express", "Express delivery to the United States takes 1-2 business days."),
    ("international", "standard", "Standard delivery to international addresses takes 7-14 business days."),
    ("UK", "standard", "Standard delivery to the United Kingdom takes 7-14 business days."),
    ("Germany", "Express", "Express delivery to Germany takes 3-6 business days."),
])
def test_delivery_times_by_region_and_method(region, method, expected):
    assert faq_answer("delivery_time", region=region, method=method).startswith(expected)


def test_delivery_times_without_a_region_list_every_region():
    text = faq_answer("delivery_time")
    assert "To the United States: standard 3-5 business days and express 1-2 business days." in text
    assert "To international addresses: standard 7-14 business days" in text


def test_a_country_we_do_not_ship_to_is_said_plainly():
    text = faq_answer("delivery_time", region="France")
    assert text.startswith("Sorry, we don't ship to France yet.")
    assert "Canada" in text
    assert faq_answer("countries", region="Canada").startswith("Yes, we ship to Canada.")
    assert faq_answer("countries") == (
        "We ship to the United States, Canada, the United Kingdom, Germany and the Netherlands."
    )


def test_shipping_options_and_free_shipping():
    assert faq_answer("shipping_options") == (
        "Standard shipping costs $5.99 (free on orders over $75.00); Express shipping costs $12.99."
    )
    assert faq_answer("shipping_cost", method="overnight").startswith(
        "We don't offer overnight shipping; our options are Standard and Express."
    )
    assert faq_answer("free_shipping") == "Free standard shipping on orders over $75.00 (after discounts)."


def test_contact_payment_and_account_answers_use_the_public_url(monkeypatch):
    monkeypatch.setenv("SHOP_PUBLIC_URL", "https://shop.example.com/")
    assert "https://shop.example.com/account/register" in faq_answer("create_account")
    assert "1. Open the sign-up page." in faq_answer("create_account")
    assert "https://shop.example.com/account/recover" in faq_answer("forgot_password")
    contact = faq_answer("contact")
    assert "support@northwind-outfitters.example" in contact and "+1 800-555-0199" in contact
    assert "Monday to Friday" in contact
    assert faq_answer("payment_methods").startswith("We accept Visa, Mastercard")
    assert "PayPal" in faq_answer("payment")


def test_return_policy_text_states_the_rules():
    text = return_policy_text()
    assert "within 30 days of delivery" in text
    assert "Beauty" in text and "clearance" in text
    assert "free with our prepaid label" in text and "paid by you" in text
    assert "original payment method within 5 business days" in text
    assert faq_answer("returns") == text


def test_every_topic_answers_and_unknown_topics_are_refused():
    for topic in FAQ_TOPICS:
        assert faq_answer(topic).strip()
    with pytest.raises(UnknownTopic) as caught:
        faq_answer("weather")
    assert "weather" in str(caught.value) and "delivery_time" in str(caught.value)


def test_final_sale_reasons():
    p = load_policy()
    assert p.final_sale_reason("Beauty", "") == "Beauty items are final sale"
    assert p.final_sale_reason("beauty", None) is not None
    assert p.final_sale_reason("Apparel", "jacket, Clearance") == "clearance items are final sale"
    assert p.final_sale_reason("Apparel", "jacket, navy") is None
    assert p.final_sale_reason(None, "") is None


def test_tracking_links_per_carrier():
    p = load_policy()
    assert p.tracking_url("UPS", "1Z999AA10123456784") == "https://www.ups.com/track?tracknum=1Z999AA10123456784"
    assert p.tracking_url("fedex", "123456789012") == "https://www.fedex.com/fedextrack/?trknbr=123456789012"
    assert p.tracking_url("Pigeon Post", "1") is None
    assert p.tracking_url("UPS", None) is None


# -- editing the file ---------------------------------------------------------------------------

def test_an_edit_takes_effect_without_a_restart(tmp_path, monkeypatch, default_data):
    default_data["returns"]["window_days"] = 45
    path = write(tmp_path, default_data)
    monkeypatch.setenv("SHOP_POLICY_FILE", str(path))
    assert "within 45 days of delivery" in return_policy_text()
    default_data["returns"]["window_days"] = 60
    default_data["contact"]["phone"] = "+1 800-555-0000 (new line)"  # a different size as well
    write(tmp_path, default_data)
    assert load_policy().returns.window_days == 60


def test_malformed_yaml_names_the_file_and_the_line(tmp_path):
    path = write(tmp_path, "version: 1\nreturns:\n  window_days: 30\n   final_sale: [Beauty\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert str(path) in message and "not valid YAML at line" in message


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["returns"].pop("window_days"), "returns.window_days is missing"),
    (lambda d: d["returns"].update(window_days="thirty"),
     "returns.window_days must be a whole number of at least 1, got 'thirty'"),
    (lambda d: d["returns"].update(window_days=0), "returns.window_days must be a whole number of at least 1"),
    (lambda d: d["returns"].update(windw_days=30), "unknown setting returns.windw_days"),
    (lambda d: d["shipping"]["methods"]["standard"].update(cost_cents=-1),
     "shipping.methods.standard.cost_cents must be a whole number of at least 0"),
    (lambda d: d["shipping"]["regions"]["us"]["delivery_business_days"].update(standard=[5, 3]),
     "shipping.regions.us.delivery_business_days.standard must be a [min, max] pair"),
    (lambda d: d["shipping"]["regions"]["us"]["delivery_business_days"].pop("express"),
     "shipping.regions.us.delivery_business_days.express is missing"),
    (lambda d: d["shipping"]["countries"].update({False: "Norway"}), "quote it"),
    (lambda d: d["shipping"]["countries"].update({"FR": "France"}), "FR is in no shipping region"),
    (lambda d: d["returns"].update(resolutions=["refund", "cash"]), "'cash' is not one of refund"),
    (lambda d: d["returns"]["return_shipping"].update(us="nobody"), "returns.return_shipping.us must be 'shop'"),
    (lambda d: d["carriers"].update(UPS="https://ups.example/track"), "carriers.UPS must be an http(s) URL"),
    (lambda d: d["account"]["create"].update(path="account/register"), "account.create.path must be a path"),
    (lambda d: d.pop("contact"), "contact is missing"),
])
def test_invalid_settings_are_named(tmp_path, default_data, change, expected):
    change(default_data)
    path = write(tmp_path, default_data)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert expected in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_a_missing_file_and_an_empty_file_are_clear_errors(tmp_path):
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "nope.yml")
    with pytest.raises(PolicyError, match="the file must be a mapping of settings, got nothing"):
        load_policy(write(tmp_path, ""))
