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

4. Strong frustration (shop.frustration: profanity, "this is useless", shouting with "!!!", the same
   message over and over) hands the chat to a person: the message keeps the shopper's words but
   reaches Rasa as talk_to_human with the reason `frustration` (Rasa's UserMessage.parse_data, so
   no NLU change), which the handoff rules answer. Not while an agent has the chat or a form runs.
5. With several Rasa replicas, a shopper's socket lives on one of them while an agent's message or a
   trigger_intent push may reach another. SOCKETIO_REDIS_URL makes python-socketio's
   AsyncRedisManager carry every emit to all replicas (on SOCKETIO_REDIS_CHANNEL); unset, emits stay
   in the process as with Rasa's stock channel.

6. A socket.io `user_uttered` payload that Rasa's handler cannot read (not an object, a message that is
   not text, customData that is not a JSON object) is answered "Sorry, I couldn't read that message."
   with the reason, instead of an exception in Rasa's handler and no answer (channels/limits.py).

Both keep Rasa's channel names ("socketio", "rest"), so the widget, the actions' choice of rich
or plain messages and trigger_intent's output_channel=latest work as with the stock channels.
"""
import hmac
import logging
import os
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Mapping, Optional, Text

import socketio
from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from rasa.core.channels.socketio import SocketIOInput, SocketIOOutput
from rasa.shared.core.events import BotUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels.card_masking import mask_card_data
from channels.conversation_state import conversation_state
from channels.limits import checked_rest_body, enforced, socket_payload_problem
from shop.frustration import detect_frustration
from shop.handoff import relay_token

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # the agent module loads TensorFlow; the channel only receives Rasa's agent
    from rasa.core.agent import Agent

AGENT_MESSAGE_MAX = 2000
AGENT_NAME_MAX = 80
# The shopper's previous messages the frustration check compares with ("the same message a third time").
EARLIER_MESSAGES = 2
# Rasa's prefix of intent payloads (buttons): never the shopper's own words.
PAYLOAD_PREFIX = "/"


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


def socketio_client_manager(environ: Optional[Mapping[str, str]] = None) -> Optional[socketio.AsyncRedisManager]:
    """The Redis client manager all replicas share (SOCKETIO_REDIS_URL), or None for python-socketio's in-memory one."""
    env = os.environ if environ is None else environ
    url = env.get("SOCKETIO_REDIS_URL", "").strip()
    if not url:
        return None
    return socketio.AsyncRedisManager(url, channel=env.get("SOCKETIO_REDIS_CHANNEL") or "socketio")


def use_client_manager(sio: socketio.AsyncServer, manager: socketio.AsyncRedisManager) -> None:
    """What AsyncServer(client_manager=manager) does, for the server Rasa 3.6 builds inside blueprint().

    python-socketio starts a manager only when the first client connects, so swapping it before the
    server is attached to the app is the same as passing it to the constructor.
    """
    if sio.manager_initialized:
        raise RuntimeError("the socket.io server already has clients; its client manager can no longer change")
    sio.manager = manager
    manager.set_server(sio)


def frustrated_parse(message: UserMessage, signals: List[Text]) -> Dict[Text, Any]:
    """Rasa's parse of a message asking for a person because of frustration; the text stays the shopper's."""
    intent = {"name": "talk_to_human", "confidence": 1.0}
    return {
        "text": message.text,
        "intent": intent,
        "intent_ranking": [intent],
        "entities": [{"entity": "handoff_reason", "value": "frustration", "start": 0, "end": len(message.text),
                      "extractor": "shop.frustration", "signals": signals}],
    }


async def flag_frustration(message: UserMessage, agent: Optional["Agent"]) -> None:
    """Sets parse_data on a strongly frustrated message, so Rasa hands the chat to a person."""
    if agent is None or agent.tracker_store is None or not message.text or message.text.startswith(PAYLOAD_PREFIX):
        return
    state = await conversation_state(agent.tracker_store, message.sender_id, EARLIER_MESSAGES)
    # An agent has the chat, or a form is asking something (the rules hand off between forms only).
    if state.paused or state.active_loop:
        return
    frustration = detect_frustration(message.text, state.earlier_texts)
    if frustration is not None:
        message.parse_data = frustrated_parse(message, list(frustration.signals))


class ShopperMessages:
    """What both shopper channels do to a message before Rasa handles it (card masking, frustration)."""

    def __init__(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]):
        self.on_new_message = on_new_message
        # The channel's blueprint, set once built; the Sanic app it is mounted on holds Rasa's agent
        # (rasa.core.channels.channel.register).
        self.webhook: Optional[Blueprint] = None

    def agent(self) -> Optional["Agent"]:
        if self.webhook is None or not self.webhook.registered:
            return None
        return getattr(next(iter(self.webhook.apps)).ctx, "agent", None)

    async def __call__(self, message: UserMessage) -> Any:
        message.text = mask_card_data(message.text)
        if type(message.output_channel) is SocketIOOutput:
            message.output_channel = WebChatOutput(message.output_channel.sio, message.output_channel.bot_message_evt)
        await flag_frustration(message, self.agent())
        return await self.on_new_message(message)


def agent_display_text(agent: str, text: str) -> str:
    return f"{agent} (shop team): {text}"


class WebChatInput(SocketIOInput):
    """socket.io for rasa-webchat, with card masking, link buttons and the human-agent relay."""

    def get_output_channel(self) -> Optional[SocketIOOutput]:
        """The channel trigger_intent's output_channel=latest answers on (payment confirmed, reminders)."""
        stock = super().get_output_channel()
        return None if stock is None else WebChatOutput(stock.sio, stock.bot_message_evt)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        shopper_messages = ShopperMessages(on_new_message)
        webhook = shopper_messages.webhook = super().blueprint(enforced(shopper_messages))
        self._check_payloads()
        manager = socketio_client_manager()
        if manager is not None:
            use_client_manager(self.sio, manager)

        @webhook.route("/agent_message", methods=["POST"])
        async def agent_message(request: Request) -> HTTPResponse:
            return await self._relay_agent_message(request)

        return webhook

    def _check_payloads(self) -> None:
        """Puts a check in front of Rasa's `user_uttered` handler: a payload it could not read is answered
        with what is wrong (to that socket only) and goes no further."""
        namespace = self.namespace or "/"
        rasa_handler = self.sio.handlers[namespace][self.user_message_evt]

        # python-socketio passes no `data` at all for an event sent without a payload.
        async def checked_handler(sid: Text, data: Any = None) -> None:
            problem = socket_payload_problem(data, self.metadata_key)
            if problem is None:
                return await rasa_handler(sid, data)
            logger.warning("Refused a %s payload of socket %s: %s", self.user_message_evt, sid, problem)
            await self.sio.emit(self.bot_message_evt, {"text": f"Sorry, I couldn't read that message. {problem}"},
                                room=sid, namespace=namespace)
            return None

        self.sio.on(self.user_message_evt, checked_handler, namespace=self.namespace)

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

        # The tracker store and lock store themselves (what the processor calls): the relay needs no
        # model, so it also works while a replica is still loading one.
        rasa_agent = request.app.ctx.agent
        async with rasa_agent.lock_store.lock(conversation_id):
            tracker = await rasa_agent.tracker_store.get_or_create_tracker(conversation_id, append_action_listen=False)
            if not tracker.is_paused():
                return response.json({"error": "the bot is not paused in this conversation"}, status=409)
            tracker.update(BotUttered(text, metadata={"agent": agent}))
            await rasa_agent.tracker_store.save(tracker)
        if self.sio is not None:
            await self.sio.emit(
                self.bot_message_evt,
                {"text": agent_display_text(agent, text), "metadata": {"agent": agent}},
                room=conversation_id,
            )
        return response.json({"status": "sent"})


class MaskingRestInput(RestInput):
    """Rasa's REST channel with card masking (also in its own error logs, which quote the message) and
    the frustration check."""

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        shopper_messages = ShopperMessages(on_new_message)
        shopper_messages.webhook = super().blueprint(enforced(shopper_messages))
        return shopper_messages.webhook

    async def _extract_sender(self, req: Request) -> Optional[Text]:
        checked_rest_body(req.json)  # a malformed body is a 400 with its reason, not a 500
        return await super()._extract_sender(req)

    def _extract_message(self, req: Request) -> Optional[Text]:
        return mask_card_data(super()._extract_message(req))
