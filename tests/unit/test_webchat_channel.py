"""The socket.io output the widget gets (postback buttons as quick replies, link buttons as web_url replies)
and the frustration check on shoppers' messages with Rasa's real agent and tracker store."""
import asyncio
import uuid

import pytest

import socketio
from rasa.core.channels.channel import UserMessage

from channels.webchat import WebChatOutput, flag_frustration


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


# Rasa's agent, tracker and event modules load TensorFlow: imported inside the tests that use them, so that
# collecting the unit tests stays quick.
@pytest.fixture(params=["sql", "memory"])
def agent_with(request, tmp_path):
    """Rasa's agent (no model needed) whose tracker store holds one conversation: a real SQLite tracker
    store (whose rows the channel reads) or the in-memory one (whose tracker it replays)."""
    from rasa.core.agent import Agent
    from rasa.core.tracker_store import InMemoryTrackerStore, SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    def make(conversation_id, events):
        if request.param == "sql":
            store = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(tmp_path / f"{uuid.uuid4().hex}.db"))
        else:
            store = InMemoryTrackerStore(Domain.empty())
        asyncio.run(store.save(DialogueStateTracker.from_events(conversation_id, events)))
        return Agent(tracker_store=store)

    return make


def shopper_said(*texts):
    from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered

    events = []
    for text in texts:
        events += [ActionExecuted("action_listen"), UserUttered(text), BotUttered("Here is what I found.")]
    return events


def flagged(agent, text, conversation_id="chat-1"):
    message = UserMessage(text, sender_id=conversation_id)
    asyncio.run(flag_frustration(message, agent))
    return message


def test_a_frustrated_message_reaches_rasa_as_talk_to_human_with_the_reason_and_the_shoppers_words(agent_with):
    message = flagged(agent_with("chat-1", shopper_said("hi")), "this is useless!!!")

    assert message.text == "this is useless!!!"
    assert message.parse_data["text"] == "this is useless!!!"
    assert message.parse_data["intent"] == {"name": "talk_to_human", "confidence": 1.0}
    [reason] = message.parse_data["entities"]
    assert (reason["entity"], reason["value"], reason["signals"]) == ("handoff_reason", "frustration",
                                                                      ["insult", "exclamations"])


def test_the_same_question_a_third_time_is_frustration_the_second_time_is_not(agent_with):
    agent = agent_with("chat-1", shopper_said("where is my parcel", "where is my parcel"))
    assert flagged(agent, "where is my parcel").parse_data["entities"][0]["signals"] == ["repeated_three_times"]
    assert flagged(agent_with("chat-1", shopper_said("where is my parcel")), "where is my parcel").parse_data is None


def test_calm_messages_buttons_paused_chats_and_running_forms_keep_rasas_own_understanding(agent_with):
    from rasa.shared.core.events import ActiveLoop, ConversationPaused

    assert flagged(agent_with("chat-1", shopper_said("hi")), "show me red sneakers").parse_data is None
    assert flagged(agent_with("chat-1", []), "/talk_to_human").parse_data is None
    # An agent has the chat: whatever the shopper writes is for them.
    assert flagged(agent_with("chat-1", [*shopper_said("hi"), ConversationPaused()]), "wtf").parse_data is None
    assert flagged(agent_with("chat-1", [*shopper_said("hi"), ActiveLoop("handoff_ticket_form")]),
                   "this is useless").parse_data is None
    # A first message has no tracker yet and is checked all the same.
    assert flagged(agent_with("other", []), "you are the worst").parse_data["intent"]["name"] == "talk_to_human"


def test_a_reverted_turn_counts_as_rasa_replays_it(agent_with):
    from rasa.shared.core.events import ActionExecuted, ConversationPaused, ConversationResumed, UserUttered, UserUtteranceReverted

    # The pause came with a message that was reverted: the chat is not with a person.
    reverted_pause = [*shopper_said("hi"), ActionExecuted("action_listen"), UserUttered("get me someone"),
                      ConversationPaused(), UserUtteranceReverted()]
    assert flagged(agent_with("chat-1", reverted_pause), "wtf").parse_data["intent"]["name"] == "talk_to_human"
    resumed = [*shopper_said("hi"), ConversationPaused(), ConversationResumed(), *shopper_said("ok")]
    assert flagged(agent_with("chat-1", resumed), "wtf").parse_data["intent"]["name"] == "talk_to_human"


def test_only_the_current_session_counts_as_earlier_messages(agent_with):
    from rasa.shared.core.events import ActionExecuted, SessionStarted

    agent = agent_with("chat-1", [*shopper_said("where is my parcel", "where is my parcel"),
                                  ActionExecuted("action_session_start"), SessionStarted()])
    assert flagged(agent, "where is my parcel").parse_data is None
