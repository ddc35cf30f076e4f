"""The SMTP mailer against a real local SMTP server (aiosmtpd), and its honest failures."""
from __future__ import annotations

import socket

import pytest

from shop.mailer import MailerRejected, MailerUnavailable, SmtpMailer, SmtpSettings, smtp_settings
from tests.unit.service_helpers import free_port, smtp_server

SMTP_VARS = ("SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD", "SMTP_STARTTLS", "SMTP_TIMEOUT",
             "SHOP_EMAIL_FROM", "SHOP_NAME")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in SMTP_VARS:
        monkeypatch.delenv(name, raising=False)


def mailer_for(port: int, **extra) -> SmtpMailer:
    fields = dict(host="127.0.0.1", port=port, sender="Shop <no-reply@shop.test>", timeout=5.0)
    fields.update(extra)
    return SmtpMailer(SmtpSettings(**fields))


def test_settings_defaults_and_environment(monkeypatch):
    s = smtp_settings()
    assert (s.host, s.port, s.user, s.password, s.starttls, s.timeout) == ("127.0.0.1", 1025, "", "", False, 10.0)
    assert s.sender == "Northwind Outfitters <no-reply@localhost>"
    monkeypatch.setenv("SMTP_HOST", "mail.internal")
    monkeypatch.setenv("SMTP_PORT", "587")
    monkeypatch.setenv("SMTP_USER", "shop")
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("SMTP_STARTTLS", "true")
    monkeypatch.setenv("SMTP_TIMEOUT", "2.5")
    monkeypatch.setenv("SHOP_EMAIL_FROM", "Help <help@shop.example>")
    assert smtp_settings() == SmtpSettings("mail.internal", 587, "shop", "s3cret", True, "Help <help@shop.example>", 2.5)
    monkeypatch.setenv("SMTP_STARTTLS", "maybe")
    with pytest.raises(ValueError, match="SMTP_STARTTLS='maybe' is not a boolean"):
        smtp_settings()
    monkeypatch.setenv("SMTP_STARTTLS", "0")
    monkeypatch.setenv("SMTP_PORT", "twenty-five")
    with pytest.raises(ValueError, match="SMTP_PORT='twenty-five' is not a number"):
        smtp_settings()


def test_a_message_reaches_the_server():
    with smtp_server() as inbox:
        message_id = mailer_for(inbox.port).send("alex.morgan@example.com", "Hello there", "Line one\nLine two\n")
    assert len(inbox.messages) == 1
    received = inbox.messages[0]
    assert received.rcpt_tos == ["alex.morgan@example.com"]
    assert received.mail_from == "no-reply@shop.test"
    assert received.message["Subject"] == "Hello there"
    assert received.message["From"] == "Shop <no-reply@shop.test>"
    assert received.message["Message-ID"] == message_id
    assert received.body == "Line one\nLine two\n"


def test_the_environment_configures_the_default_mailer(monkeypatch):
    with smtp_server() as inbox:
        monkeypatch.setenv("SMTP_PORT", str(inbox.port))
        monkeypatch.setenv("SHOP_EMAIL_FROM", "Northwind <hello@northwind.test>")
        SmtpMailer().send("sam@example.com", "Hi", "Body")
    assert inbox.messages[0].message["From"] == "Northwind <hello@northwind.test>"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_with_credentials():
    with smtp_server(credentials=("shop", "s3cret")) as inbox:
        mailer_for(inbox.port, user="shop", password="s3cret").send("sam@example.com", "Hi", "Body")
        with pytest.raises(MailerRejected, match="refused the login of 'shop'"):
            mailer_for(inbox.port, user="shop", password="wrong").send("sam@example.com", "Hi", "Body")
    assert len(inbox.messages) == 1


def test_a_refused_recipient_is_a_rejection():
    with smtp_server(refuse=["gone@example.com"]) as inbox:
        with pytest.raises(MailerRejected, match="refused the recipient 'gone@example.com'"):
            mailer_for(inbox.port).send("gone@example.com", "Hi", "Body")
    assert inbox.messages == []


def test_no_server_is_a_clear_error():
    port = free_port()
    mailer = mailer_for(port)
    with pytest.raises(MailerUnavailable) as caught:
        mailer.send("sam@example.com", "Hi", "Body")
    assert f"cannot connect to the SMTP server at 127.0.0.1:{port}" in str(caught.value)
    assert caught.value.shopper_message == "I couldn't send the email just now. Please try again in a few minutes."
    with pytest.raises(MailerUnavailable):
        mailer.check()


def test_a_server_that_never_answers_times_out():
    with socket.socket() as silent:  # accepts connections (kernel backlog) but never says hello
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        mailer = mailer_for(silent.getsockname()[1], timeout=0.3)
        with pytest.raises(MailerUnavailable, match="timed out"):
            mailer.send("sam@example.com", "Hi", "Body")


def test_starttls_required_but_not_offered():
    with smtp_server() as inbox:
        with pytest.raises(MailerUnavailable, match="does not offer STARTTLS but SMTP_STARTTLS is true"):
            mailer_for(inbox.port, starttls=True).send("sam@example.com", "Hi", "Body")
    assert inbox.messages == []
