"""The newsletter's unsubscribe link on the real shop front: a page with one button, honoured at once."""
from datetime import datetime

import requests

from shop.db import make_engine, session_scope
from shop.newsletter import NewsletterConsent, NewsletterSubscriber, is_subscribed, subscribe


def test_the_unsubscribe_link_asks_then_unsubscribes_and_records_it(web_server, shop_database):
    engine = make_engine(shop_database)
    with session_scope(engine) as session:
        token = subscribe(session, "reader@example.com", "chat", datetime.utcnow()).unsubscribe_url.rsplit("/", 1)[1]

    page = requests.get(f"{web_server}/newsletter/unsubscribe/{token}", timeout=10)
    assert page.status_code == 200
    assert "Stop getting the Test Trail Supply newsletter?" in page.text
    with session_scope(engine) as session:
        assert is_subscribed(session, "reader@example.com")  # opening the link alone changes nothing

    done = requests.post(f"{web_server}/newsletter/unsubscribe/{token}", timeout=10)
    assert done.status_code == 200
    assert "You&#39;re unsubscribed: you won&#39;t get our newsletter." in done.text
    with session_scope(engine) as session:
        assert not is_subscribed(session, "reader@example.com")
        subscriber = session.query(NewsletterSubscriber).filter_by(email="reader@example.com").one()
        actions = [row.action for row in session.query(NewsletterConsent).filter_by(subscriber_id=subscriber.id)
                   .order_by(NewsletterConsent.id)]
        assert actions == ["subscribe", "unsubscribe"]
        assert subscriber.unsubscribed_at is not None


def test_a_made_up_token_reveals_nothing_and_changes_nothing(web_server):
    done = requests.post(f"{web_server}/newsletter/unsubscribe/not-a-real-token-but-long-enough", timeout=10)
    assert done.status_code == 200
    assert "That unsubscribe link isn&#39;t valid" in done.text
    bad = requests.post(f"{web_server}/newsletter/unsubscribe/%3Cscript%3E", timeout=10)
    assert bad.status_code == 400
    assert "<script>" not in bad.text
