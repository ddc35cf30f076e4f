"""The shopper-facing channels: Rasa's socket.io (rasa-webchat) and REST channels with two additions.

1. Card data is masked in every shopper message before Rasa handles it (see `card_masking`).
2. While a person has taken over a conversation (Rasa paused it), the agent console posts the
   agent's messages to POST /webhooks/socketio/agent_message; each is kept in the tracker as a
   bot utterance with metadata {"agent": name} and pushed to the shopper's widget at once.
   The console reads the shopper's side from the tracker (Rasa's HTTP API).

Both keep Rasa's channel names ("socketio", "rest"), so the widget, the actions' choice of rich
or plain messages and trigger_intent's output_channel=latest work as with the stock channels.
"""
import hmac
from typing import Any, Awaitable, Callable, Optional, Text

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from rasa.core.channels.socketio import SocketIOInput
from rasa.shared.core.events import BotUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels.card_masking import mask_card_data
from shop.handoff import relay_token

AGENT_MESSAGE_MAX = 2000
AGENT_NAME_MAX = 80


def masking(on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Callable[[UserMessage], Awaitable[Any]]:
    async def handle(message: UserMessage) -> Any:
        message.text = mask_card_data(message.text)
        return await on_new_message(message)

    return handle


def agent_display_text(agent: str, text: str) -> str:
    return f"{agent} (shop team): {text}"


class WebChatInput(SocketIOInput):
    """socket.io for rasa-webchat, with card masking and the human-agent relay."""

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
