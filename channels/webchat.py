"""The shopper-facing channels: Rasa's socket.io (rasa-webchat) and REST channels with three additions.

1. Card data is masked in every shopper message before Rasa handles it (see `card_masking`).
2. While a person has taken over a conversation (Rasa paused it), the agent console posts the
   agent's messages to POST /webhooks/socketio/agent_message; each is kept in the tracker as a
   bot utterance with metadata {"agent": name} and pushed to the shopper's widget at once.
   The console reads the shopper's side from the tracker (Rasa's HTTP API).
3. Buttons that open a page ({"type": "web_url", "url": ...}, e.g. "Pay now") reach rasa-webchat as
   link replies. Rasa 3.6's socket.io output knows only postback buttons: a URL button raised
   KeyError('payload') after the action had run, and the whole turn (the placed order's message and
   the tracker update) was lost.

Both keep Rasa's channel names ("socketio", "rest"), so the widget, the actions' choice of rich
or plain messages and trigger_intent's output_channel=latest work as with the stock channels.
"""
import hmac
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from rasa.core.channels.socketio import SocketIOInput, SocketIOOutput
from rasa.shared.core.events import BotUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels.card_masking import mask_card_data
from shop.handoff import relay_token

AGENT_MESSAGE_MAX = 2000
AGENT_NAME_MAX = 80


class WebChatOutput(SocketIOOutput):
    """socket.io output whose buttons may also be links (rasa-webchat renders type web_url as <a>)."""

    async def send_text_with_buttons(self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]],
                                     **kwargs: Any) -> None:
        parts = text.strip().split("\n\n") or [text]
        for part in parts[:-1]:
            await self._send_message(recipient_id, {"text": part})
        await self._send_message(recipient_id, {"text": parts[-1], "quick_replies": [_reply(b) for b in buttons]})


def _reply(button: Dict[Text, Any]) -> Dict[Text, Any]:
    if button.get("url"):
        return {"type": "web_url", "title": button["title"], "url": button["url"]}
    return {"content_type": "text", "title": button["title"], "payload": button.get("payload", button["title"])}


def masking(on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Callable[[UserMessage], Awaitable[Any]]:
    async def handle(message: UserMessage) -> Any:
        message.text = mask_card_data(message.text)
        if type(message.output_channel) is SocketIOOutput:
            message.output_channel = WebChatOutput(message.output_channel.sio, message.output_channel.bot_message_evt)
        return await on_new_message(message)

    return handle


def agent_display_text(agent: str, text: str) -> str:
    return f"{agent} (shop team): {text}"


class WebChatInput(SocketIOInput):
    """socket.io for rasa-webchat, with card masking, link buttons and the human-agent relay."""

    def get_output_channel(self) -> Optional[SocketIOOutput]:
        """The channel trigger_intent's output_channel=latest answers on (payment confirmed, reminders)."""
        stock = super().get_output_channel()
        return None if stock is None else WebChatOutput(stock.sio, stock.bot_message_evt)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = super().blueprint(masking(on_new_message))

        @webhook.route("/agent_message", methods=["POST"])
        async def agent_message(request: Request) -> HTTPResponse:
            return await self._relay_agent_message(request)

        return webhook

    async def _relay_agent_message(self, request: Request) -> HTTPResponse:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {relay_token()}".encode()):
            return response.json({"error": "not allowed"}, status=401)
        body = request.json if isinstance(request.json, dict) else {}
        conversation_id = str(body.get("conversation_id") or "").strip()
        agent = str(body.get("agent") or "").strip()[:AGENT_NAME_MAX]
        text = str(body.get("text") or "").strip()
        if not conversation_id or not agent or not text:
            return response.json({"error": "conversation_id, agent and text are required"}, status=400)
        if len(text) > AGENT_MESSAGE_MAX:
            return response.json({"error": f"messages are limited to {AGENT_MESSAGE_MAX} characters"}, status=400)

        rasa_agent = request.app.ctx.agent
        async with rasa_agent.lock_store.lock(conversation_id):
            tracker = await rasa_agent.processor.get_tracker(conversation_id)
            if not tracker.is_paused():
                return response.json({"error": "the bot is not paused in this conversation"}, status=409)
            tracker.update(BotUttered(text, metadata={"agent": agent}))
            await rasa_agent.processor.save_tracker(tracker)
        if self.sio is not None:
            await self.sio.emit(
                self.bot_message_evt,
                {"text": agent_display_text(agent, text), "metadata": {"agent": agent}},
                room=conversation_id,
            )
        return response.json({"status": "sent"})


class MaskingRestInput(RestInput):
    """Rasa's REST channel with card masking (also in its own error logs, which quote the message)."""

    def _extract_message(self, req: Request) -> Optional[Text]:
        return mask_card_data(super()._extract_message(req))
