"""Human handoff end to end: a shopper in the real widget, an agent in the console, real Rasa.

Two Chromium pages at once (separate browser contexts, so separate cookies and chat sessions).
Plus: card data typed into either shopper channel never reaches the tracker store or the logs.
"""
import sqlite3
import time

import requests
from playwright.sync_api import expect, sync_playwright

from shop.db import session_scope
from shop.handoff import HandoffRequest, hash_password
from tests.browser import launch_chromium
from tests.e2e.conftest import AGENT_NAME, AGENT_PASSWORD, SHOP_NAME
from ops.servers import BIN, Server, free_port
from tests.e2e.test_socketio import WebChatClient

BOT_MESSAGES = "#shop-chat .rw-group-message.rw-from-response .rw-message-text"
# The shopper's socket gets an agent's message at once; rasa-webchat then shows its typing dots
# for 0.8-3 s (customMessageDelay) before the text.
LIVE_MS = 4_500


def say(page, text):
    box = page.locator("#shop-chat .rw-new-message")
    box.fill(text)
    box.press("Enter")


def tracker_events(stack, conversation_id):
    return requests.get(f"{stack.rasa_url}/conversations/{conversation_id}/tracker", timeout=10).json()["events"]


def test_an_agent_takes_over_a_chat_and_hands_it_back(stack):
    page_errors = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            shopper = browser.new_context().new_page()
            shopper.on("pageerror", lambda error: page_errors.append(str(error)))
            shopper.goto(stack.web_url)
            shopper.locator("#shop-chat .rw-launcher").click()
            expect(shopper.locator(BOT_MESSAGES).first).to_contain_text(f"welcome to {SHOP_NAME}", timeout=30_000)
            say(shopper, "can I talk to a real person please")
            expect(shopper.locator(BOT_MESSAGES).last).to_contain_text("getting a person from our team",
                                                                        timeout=30_000)
            session_id = shopper.evaluate("JSON.parse(sessionStorage.getItem('chat_session')).session_id")

            agent = browser.new_context().new_page()
            agent.on("pageerror", lambda error: page_errors.append(str(error)))
            agent.goto(f"{stack.web_url}/console")
            agent.fill("#agent-name", AGENT_NAME)
            agent.fill("#agent-password", AGENT_PASSWORD)
            agent.click("button[type=submit]")
            entry = agent.locator("#queue-waiting li", has_text=session_id[:10])
            expect(entry).to_contain_text("talk to human", timeout=10_000)
            entry.locator("button").click()
            transcript = agent.locator("#transcript")
            expect(transcript).to_contain_text("can I talk to a real person please", timeout=10_000)
            expect(agent.locator("#context")).to_contain_text("reason for handoff")

            agent.click("#claim")
            expect(shopper.locator(BOT_MESSAGES).last).to_contain_text(
                f"{AGENT_NAME} (shop team): Hi, I'm {AGENT_NAME}", timeout=5_000)

            bot_messages_before = shopper.locator(BOT_MESSAGES).count()
            say(shopper, "my parcel never arrived <b>help</b>")
            expect(transcript.locator("li.from-shopper").last).to_have_text(
                "Shopper:my parcel never arrived <b>help</b>", timeout=5_000)
            agent.fill("#reply-text", "Sorry about that! I'm checking with the courier now.")
            agent.click("#reply button[type=submit]")
            expect(shopper.locator(BOT_MESSAGES).last).to_have_text(
                f"{AGENT_NAME} (shop team): Sorry about that! I'm checking with the courier now.", timeout=LIVE_MS)
            # The agent answered after Rasa had handled the shopper's message: had the bot said
            # anything, it would sit between the two. Only the agent's message arrived.
            assert shopper.locator(BOT_MESSAGES).count() == bot_messages_before + 1
            expect(transcript.locator("li.from-agent").last).to_contain_text("checking with the courier")

            agent.click("#resolve")
            expect(shopper.locator(BOT_MESSAGES).filter(has_text="I'm back. Anything else I can help with?")) \
                .to_have_count(1, timeout=10_000)
            expect(shopper.locator(BOT_MESSAGES).last).to_contain_text(f"help you got from {AGENT_NAME}")
            shopper.locator("#shop-chat .rw-reply", has_text="5").click()
            expect(shopper.locator(BOT_MESSAGES).last).to_have_text(
                f"Thank you! I've passed your 5/5 on to {AGENT_NAME}.", timeout=30_000)
            expect(agent.locator("#queue-resolved li", has_text=session_id[:10])).to_contain_text(
                "rated 5/5", timeout=5_000)
        finally:
            browser.close()
    assert page_errors == []

    with session_scope(stack.engine()) as session:
        handoff = session.query(HandoffRequest).filter_by(conversation_id=session_id).one()
        assert (handoff.status, handoff.agent, handoff.reason, handoff.rating) == (
            "resolved", AGENT_NAME, "talk_to_human", 5)

    # The tracker store holds the whole conversation, the agent's messages included, and the
    # bot said nothing between the pause and the resume.
    events = tracker_events(stack, session_id)
    kinds = [e["event"] for e in events]
    paused = events[kinds.index("pause"):kinds.index("resume")]
    bot_lines = [(e["text"], (e.get("metadata") or {}).get("agent")) for e in paused if e["event"] == "bot"]
    assert bot_lines == [
        (f"Hi, I'm {AGENT_NAME} from the {SHOP_NAME} team. I've read our chat so far; how can I help?", AGENT_NAME),
        ("Sorry about that! I'm checking with the courier now.", AGENT_NAME),
    ]
    assert "my parcel never arrived <b>help</b>" in [e.get("text") for e in paused if e["event"] == "user"]


CARD_MESSAGE = "my card 4242 4242 4242 4242 was declined, expiry 12/29, cvv 737"
REST_CARD_MESSAGE = "is 4000-0000-0000-0002 a valid card? security code 1234"


def test_card_data_typed_into_the_chat_never_reaches_the_tracker_store(stack):
    chat = WebChatClient(stack.rasa_url, "card-shopper-socket")
    try:
        chat.say(CARD_MESSAGE)
        chat.next_reply()
    finally:
        chat.close()
    rest = requests.post(f"{stack.rasa_url}/webhooks/rest/webhook",
                         json={"sender": "card-shopper-rest", "message": REST_CARD_MESSAGE}, timeout=60)
    assert rest.status_code == 200

    socket_texts = [e.get("text") for e in tracker_events(stack, "card-shopper-socket") if e["event"] == "user"]
    assert "my card [card number hidden] was declined, expiry [expiry date hidden], cvv [security code hidden]" \
        in socket_texts
    rest_texts = [e.get("text") for e in tracker_events(stack, "card-shopper-rest") if e["event"] == "user"]
    assert "is [card number hidden] a valid card? security code [security code hidden]" in rest_texts

    with sqlite3.connect(stack.workdir / "tracker.db") as db:
        stored = "\n".join(row[0] for row in db.execute("SELECT data FROM events"))
    logs = "\n".join((stack.workdir / name).read_text(errors="replace") for name in ("rasa.log", "actions.log"))
    for secret in ("4242 4242 4242 4242", "4242424242424242", "4000-0000-0000-0002", "12/29", "cvv 737",
                   "code 1234"):
        assert secret not in stored
        assert secret not in logs


def console_login(base_url):
    session = requests.Session()
    response = session.post(f"{base_url}/console/login", data={"name": AGENT_NAME, "password": AGENT_PASSWORD},
                            allow_redirects=False, timeout=10)
    assert response.status_code == 302
    return session


def shopper_lines(console, base_url, handoff_id, until, timeout=15.0):
    """The shopper's messages in the console's transcript, once `until` is among them (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        conversation = console.get(f"{base_url}/console/api/conversations/{handoff_id}", timeout=10).json()
        lines = [line["text"] for line in conversation["transcript"] if line["from"] == "shopper"]
        if until in lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_a_claimed_chat_survives_a_restart_of_the_console(stack, tmp_path):
    chat = WebChatClient(stack.rasa_url, "restart-shopper")
    second_front = None
    try:
        chat.say("get me a human")
        assert "getting a person from our team" in chat.next_reply()["text"]
        first = console_login(stack.web_url)
        waiting = [h for h in first.get(f"{stack.web_url}/console/api/queue", timeout=10).json()["waiting"]
                   if h["conversation_id"] == "restart-shopper"]
        handoff_id = waiting[0]["id"]
        assert first.post(f"{stack.web_url}/console/api/conversations/{handoff_id}/claim", timeout=30).ok
        assert f"Hi, I'm {AGENT_NAME}" in chat.next_reply()["text"]
        chat.say("are you still there?")

        # A new console process (the restarted server) knows the chat and its transcript from
        # the database and Rasa's tracker store alone.
        port = free_port()
        second_url = f"http://127.0.0.1:{port}"
        second_front = Server("second web front", [str(BIN / "python"), "-m", "web"], {
            "SHOP_DATABASE_URL": stack.database_url, "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port),
            "RASA_URL": stack.rasa_url, "RASA_SOCKET_URL": stack.rasa_url, "SHOP_NAME": SHOP_NAME,
            "SHOP_AGENTS": f"{AGENT_NAME}:{hash_password(AGENT_PASSWORD)}", "SHOP_HANDOFF_WAIT_SECONDS": "600",
        }, tmp_path / "second-web.log")
        second_front.wait_until_ready(f"{second_url}/healthz", lambda r: r.ok, 60)
        second = console_login(second_url)
        active = second.get(f"{second_url}/console/api/queue", timeout=10).json()["active"]
        assert [(h["id"], h["agent"]) for h in active if h["conversation_id"] == "restart-shopper"] == [
            (handoff_id, AGENT_NAME)]
        assert shopper_lines(second, second_url, handoff_id, until="are you still there?")[-2:] == [
            "get me a human", "are you still there?"]

        assert second.post(f"{second_url}/console/api/conversations/{handoff_id}/messages",
                           json={"text": "Yes, still here."}, timeout=10).ok
        assert chat.next_reply()["text"] == f"{AGENT_NAME} (shop team): Yes, still here."
        assert second.post(f"{second_url}/console/api/conversations/{handoff_id}/resolve", timeout=30).ok
        assert chat.next_reply()["text"] == "I'm back. Anything else I can help with?"
    finally:
        chat.close()
        if second_front is not None:
            second_front.stop()


def test_when_nobody_claims_in_time_the_shopper_leaves_a_message_and_gets_a_ticket(stack):
    chat = WebChatClient(stack.rasa_url, "ticket-shopper")
    try:
        chat.say("talk to human")
        assert "getting a person from our team" in chat.next_reply()["text"]
        # What the console's sweeper does once SHOP_HANDOFF_WAIT_SECONDS have passed unclaimed
        # (the shared stack waits 600 s, so the test takes the sweeper's step itself).
        for action in ("action_handoff_no_agent", "action_listen"):
            requests.post(f"{stack.rasa_url}/conversations/ticket-shopper/execute?output_channel=latest",
                          json={"name": action}, timeout=30).raise_for_status()
        assert "nobody could join in time" in chat.next_reply()["text"]
        assert chat.next_reply()["text"] == "What email address should our team reply to?"

        chat.say("it's sam.lee@example.com")
        assert chat.next_reply()["text"] == "In a sentence or two, what do you need help with?"
        chat.say("I was charged twice for one order")
        confirmation = chat.next_reply()["text"]
        assert "I've created ticket HT-" in confirmation and "sam.lee@example.com" in confirmation
    finally:
        chat.close()

    number = confirmation.split("ticket ")[1].split(" ")[0]
    tickets = console_login(stack.web_url).get(f"{stack.web_url}/console/api/queue", timeout=10).json()["tickets"]
    assert {"number": number, "email": "sam.lee@example.com", "summary": "I was charged twice for one order",
            "reason": "talk_to_human"}.items() <= next(t for t in tickets if t["number"] == number).items()
