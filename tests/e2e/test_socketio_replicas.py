"""Two Rasa replicas share socket.io through Redis (SOCKETIO_REDIS_URL), as in `make run-scaled`.

The shopper's socket is on replica A; the agent console's message reaches replica B, and a push the
way trigger_intent sends it (the channel's output for output_channel=latest) comes from a third
process. Both must reach the shopper. The replicas are real `rasa run` servers with the shop's
credentials.yml, a shared tracker store and the real Redis lock store, but no model (Rasa starts
without one when its HTTP API is on): the relay needs none, and the replicas start in seconds
instead of loading the shop's model twice.
"""
import asyncio
import uuid

import pytest
import requests

from ops.servers import BIN, Server, free_port
from shop.handoff import relay_token
from tests.e2e.test_socketio import WebChatClient

REDIS_URL = "redis://127.0.0.1:6379/0"
CONVERSATION = "replica-shopper"


def rasa_store(tracker_db):
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain

    return SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(tracker_db))


@pytest.fixture
def replicas(tmp_path, monkeypatch):
    """Replica A and B on free ports, sharing a tracker store, the Redis lock store and a socket.io channel."""
    from rasa.shared.core.events import ActionExecuted, ConversationPaused, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    tracker_db = tmp_path / "tracker.db"
    # The conversation an agent has claimed (Rasa paused it); made before the replicas start, so that
    # they do not race each other creating the tables.
    asyncio.run(rasa_store(tracker_db).save(DialogueStateTracker.from_events(CONVERSATION, [
        ActionExecuted("action_listen"), UserUttered("get me a human"), ConversationPaused()])))
    run_id = uuid.uuid4().hex[:12]
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(
        f'tracker_store:\n  type: SQL\n  dialect: "sqlite"\n  db: "{tracker_db}"\n'
        f"lock_store:\n  type: redis\n  url: 127.0.0.1\n  port: 6379\n  db: 1\n  key_prefix: replicas{run_id}\n"
    )
    no_model = tmp_path / "no-model"
    no_model.mkdir()
    env = {"SOCKETIO_REDIS_URL": REDIS_URL, "SOCKETIO_REDIS_CHANNEL": f"test-replicas-{run_id}",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # this process is the third one, pushing like trigger_intent

    servers, urls = [], []
    try:
        for name in ("a", "b"):
            port = free_port()
            servers.append(Server(f"rasa replica {name}", [
                str(BIN / "rasa"), "run", "--enable-api", "--model", str(no_model), "-i", "127.0.0.1", "-p", str(port),
                "--endpoints", str(endpoints), "--credentials", "credentials.yml"], env, tmp_path / f"rasa-{name}.log"))
            urls.append(f"http://127.0.0.1:{port}")
        for server, url in zip(servers, urls):
            server.wait_until_ready(f"{url}/webhooks/socketio/", lambda r: r.ok, 180)
        yield urls, tracker_db
    finally:
        for server in servers:
            server.stop()


def push_like_trigger_intent(text):
    """What Rasa's trigger_intent with output_channel=latest does on a replica without the shopper's socket."""
    from rasa.core.run import create_http_input_channels

    from channels.webchat import WebChatInput

    [channel] = [c for c in create_http_input_channels(None, "credentials.yml") if isinstance(c, WebChatInput)]
    channel.blueprint(lambda message: None)
    asyncio.run(channel.get_output_channel().send_text_message(CONVERSATION, text))


def test_a_shopper_on_one_replica_gets_what_an_agent_sends_through_another(replicas):
    (replica_a, replica_b), tracker_db = replicas
    chat = WebChatClient(replica_a, CONVERSATION)
    try:
        sent = requests.post(f"{replica_b}/webhooks/socketio/agent_message",
                             json={"conversation_id": CONVERSATION, "agent": "alice", "text": "Hi, I'm on it."},
                             headers={"Authorization": f"Bearer {relay_token()}"}, timeout=30)
        assert sent.status_code == 200, sent.text
        assert chat.next_reply() == {"text": "alice (shop team): Hi, I'm on it.", "metadata": {"agent": "alice"}}

        push_like_trigger_intent("Your payment for order SH-1 is confirmed.")
        assert chat.next_reply()["text"] == "Your payment for order SH-1 is confirmed."
    finally:
        chat.close()

    tracker = asyncio.run(rasa_store(tracker_db).retrieve(CONVERSATION))
    assert [(e.text, e.metadata.get("agent")) for e in tracker.events if e.type_name == "bot"] == [
        ("Hi, I'm on it.", "alice")]
