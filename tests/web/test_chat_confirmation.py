"""The shop front's on_paid hook speaks Rasa's trigger_intent API (the real Rasa round trip is in
tests/e2e/test_checkout.py); here an HTTP server records what arrives, and a Rasa that is down costs no payment."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from shop.payments import PaymentOutcome
from tests.web.conftest import free_port
from web.payments import chat_confirmation_hook


def outcome(conversation_id="chat 42/a"):
    return PaymentOutcome("paid", True, "evt_1", order_number="SH-100007", conversation_id=conversation_id,
                          amount_cents=8900)


def test_a_paid_chat_order_triggers_payment_confirmed_in_its_conversation():
    received = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        hook = chat_confirmation_hook(f"http://127.0.0.1:{server.server_port}/", token="s3cret")
        hook(outcome())
        hook(outcome(conversation_id=None))  # a web order has no chat to tell
    finally:
        server.shutdown()
        thread.join(5)
    assert received == [(
        "/conversations/chat%2042%2Fa/trigger_intent?output_channel=latest&token=s3cret", "application/json",
        {"name": "payment_confirmed", "entities": {"order_number": "SH-100007"}},
    )]


def test_a_rasa_server_that_is_down_is_logged_not_raised(caplog):
    hook = chat_confirmation_hook(f"http://127.0.0.1:{free_port()}", token="")
    hook(outcome())
    assert "could not confirm order SH-100007 in the chat" in caplog.text
