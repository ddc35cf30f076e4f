import queue

import socketio

from tests.e2e.catalog_checks import assert_are_red_sneakers_under
from tests.e2e.conftest import SHOP_NAME


class WebChatClient:
    """Talks to Rasa's socket.io channel the way the rasa-webchat widget does."""

    def __init__(self, url: str, session_id: str):
        self.session_id = session_id
        self.replies: "queue.Queue[dict]" = queue.Queue()
        self.confirmed: "queue.Queue[str]" = queue.Queue()
        self.client = socketio.Client()
        self.client.on("bot_uttered", self.replies.put)
        self.client.on("session_confirm", lambda data: self.confirmed.put(data))
        self.client.connect(url, socketio_path="/socket.io", transports=["polling"])
        self.client.emit("session_request", {"session_id": session_id})
        self.confirmed.get(timeout=20)

    def say(self, text: str) -> None:
        self.client.emit("user_uttered", {"message": text, "session_id": self.session_id})

    def next_reply(self) -> dict:
        return self.replies.get(timeout=60)

    def close(self) -> None:
        self.client.disconnect()


def test_web_chat_conversation_gets_product_cards_from_the_database(stack):
    chat = WebChatClient(stack.rasa_url, "socket-shopper-1")
    try:
        chat.say("hi")
        assert f"welcome to {SHOP_NAME}" in chat.next_reply()["text"]

        chat.say("show me red sneakers under 80 dollars")
        intro = chat.next_reply()
        assert "red sneakers under $80" in intro["text"]
        carousel = chat.next_reply()["attachment"]
        assert carousel["payload"]["template_type"] == "generic"
        cards = carousel["payload"]["elements"]
        assert all(card["buttons"][0]["url"].startswith(f"{stack.web_url}/products/") for card in cards)
        assert_are_red_sneakers_under(stack.engine(), [card["title"] for card in cards], 8000)
    finally:
        chat.close()
