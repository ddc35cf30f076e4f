"""The socket.io output the widget gets: postback buttons as quick replies, link buttons as web_url replies."""
import asyncio

import socketio

from channels.webchat import WebChatOutput


class RecordingServer(socketio.AsyncServer):
    """A real python-socketio server that keeps what it would emit instead of needing connected clients."""

    def __init__(self):
        super().__init__(async_mode="asgi")
        self.emitted = []

    async def emit(self, event, data=None, room=None, **kwargs):
        self.emitted.append((event, data, room))


def test_a_link_button_reaches_the_widget_as_a_web_url_reply_beside_postbacks():
    server = RecordingServer()
    output = WebChatOutput(server, "bot_uttered")
    asyncio.run(output.send_text_with_buttons("chat-1", "Order SH-1 is placed.\n\nPay within 30 minutes.", [
        {"title": "Pay now", "type": "web_url", "url": "http://shop.test/pay/ps_1"},
        {"title": "Cancel", "payload": "/deny"},
    ]))
    assert server.emitted == [
        ("bot_uttered", {"text": "Order SH-1 is placed."}, "chat-1"),
        ("bot_uttered", {"text": "Pay within 30 minutes.", "quick_replies": [
            {"type": "web_url", "title": "Pay now", "url": "http://shop.test/pay/ps_1"},
            {"content_type": "text", "title": "Cancel", "payload": "/deny"},
        ]}, "chat-1"),
    ]
