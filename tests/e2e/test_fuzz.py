"""Fuzz test (#9, item 7): 1,000 seeded random, unicode, oversized and malicious messages and malformed
payloads to the REST and socket.io channels of the real Rasa server of the e2e stack: 560 messages and 140
malformed HTTP bodies over REST, 250 messages and 50 malformed `user_uttered` payloads over socket.io.

Afterwards: no HTTP answer was a 5xx, every oversized message got the "too long" reply, every malformed
payload was answered with what is wrong, every socket.io message that was not refused is in its
conversation's tracker, every fuzzed web chat still answers "hi", and the shop's data holds exactly what
it held before. Requests for a person ("/talk_to_human", shouting, a message said three times) rightly
open handoff requests, so that table is left out of the comparison.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Tuple

import pytest
import requests
from sqlalchemy import select

from channels.card_masking import mask_card_data
from channels.limits import max_message_chars, too_fast_reply, too_long_reply
from shop.db import shop_metadata
from tests.e2e.conftest import SHOP_NAME
from tests.e2e.test_socketio import WebChatClient

SEED = 20261203
# Ten minutes was not enough on 2 cores shared with other test runs (load average 7).
pytestmark = pytest.mark.timeout(1500)
REST_MESSAGES, REST_BODIES = 560, 140
REST_SENDERS = 40  # 14 messages a conversation: well under the per-minute limit
SOCKET_MESSAGES, SOCKET_PAYLOADS = 250, 50
SOCKET_SESSIONS = 20  # 13 messages and 3 payloads a web chat
# Time for Rasa to work through the whole socket.io fuzz on 2 shared cores.
SOCKET_SETTLE_SECONDS = 900
OVERSIZED = 10_000
CONVERSATION_STATE_TABLES = {"handoff_requests"}

SQL = ["' OR '1'='1", "1; DROP TABLE products; --", "'; DELETE FROM orders WHERE ''='", "\" UNION SELECT * FROM customers --",
       "order NW-1' OR 1=1 --", "admin'--", "1' AND SLEEP(5)--", "%' AND 1=0 UNION SELECT email FROM customers --"]
HTML = ["<script>alert(1)</script>", "<img src=x onerror=alert(document.cookie)>", "<a href='javascript:alert(1)'>x</a>",
        "\"><svg/onload=fetch('//evil')>", "{{7*7}} ${7*7} <%= 7*7 %>", "<iframe src=//evil></iframe>"]
WORDS = ["red", "sneakers", "under", "$80", "order", "cancel", "refund", "cart", "add", "size", "42", "jacket",
         "hi", "help", "checkout", "person", "newsletter", "return", "blue", "jeans", "where", "is", "my"]
ODD = ["", " ", "\u200b\u200d\ufeff", "\u202eevil\u202c", "%s%s%n{0}{1}", "../../etc/passwd", "null", "undefined",
       "NaN", "[]", "{}", "/restart", "/talk_to_human{\"x\": 1}", "/search_product{\"category\": \"<b>\"}", "💥" * 50,
       "ﷺ" * 30, "𝕳𝖊𝖑𝖑𝖔", "Ω≈ç√∫", "田中さんにあげて下さい", "مرحبا بالعالم", "\x00\x01\x02 hi", "\r\n\t\x1b[31mred"]


def random_message(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice(SQL)
    if kind == 1:
        return rng.choice(HTML)
    if kind == 2:
        return rng.choice(ODD)
    if kind == 3:  # random code points, surrogates excluded
        return "".join(chr(rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0xA0, 0xD7FF),
                                       rng.randrange(0xE000, 0x10FFFF)])) for _ in range(rng.randrange(1, 80)))
    if kind == 4:  # control characters mixed with words
        return "".join(rng.choice([chr(rng.randrange(0, 32)), rng.choice(WORDS) + " "]) for _ in range(12))
    if kind == 5:
        return "x" * OVERSIZED if rng.random() < 0.5 else " ".join(rng.choice(WORDS) for _ in range(OVERSIZED // 4))
    if kind == 6:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 12)))
    return rng.choice(WORDS) + " " + rng.choice(SQL + HTML)


def malformed_body(rng: random.Random) -> Tuple[bytes, Dict[str, str]]:
    json_type = {"Content-Type": "application/json"}
    bodies = [
        b"{", b"}", b"null", b"[]", b"123", b'"just a string"', b"true", b"{'single': 'quotes'}",
        b'{"sender": "a"}', b'{"message": null}', b'{"sender": "a", "message": 5}',
        b'{"sender": {}, "message": "hi"}', b'{"sender": ["x"], "message": "hi"}', b'{"sender": "a", "message": ["x"]}',
        b'{"sender": "a", "message": {"text": "hi"}}', b'{"sender": true, "message": "hi"}', b"\xff\xfe\xfd",
        b'{"sender": "a", "message": "hi", "metadata": "not an object"}', b"[" * 5000 + b"]" * 5000,
        json.dumps({"sender": "a", "message": "x" * 200_000}).encode(), b"",
    ]
    body = rng.choice(bodies)
    headers = rng.choice([json_type, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}])
    return body, headers


def database_fingerprint(engine) -> Dict[str, Tuple[int, str]]:
    """Row count and a hash of every row, per table of the shop."""
    fingerprint = {}
    with engine.connect() as conn:
        for table in shop_metadata().sorted_tables:
            if table.name in CONVERSATION_STATE_TABLES:
                continue
            rows = sorted(repr(tuple(row)) for row in conn.execute(select(table)))
            fingerprint[table.name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return fingerprint


def test_fuzzed_rest_messages_and_bodies_get_no_5xx_no_crash_and_change_no_shop_data(stack):
    rng = random.Random(SEED)
    engine = stack.engine()
    before = database_fingerprint(engine)
    rest_url = f"{stack.rasa_url}/webhooks/rest/webhook"
    run_id = uuid.uuid4().hex[:8]
    too_long = too_long_reply(max_message_chars())

    messages = [(f"fuzz-{run_id}-{i % REST_SENDERS}", random_message(rng)) for i in range(REST_MESSAGES)]
    bodies = [malformed_body(rng) for _ in range(REST_BODIES)]

    def post_message(sender_and_text):
        sender, text = sender_and_text
        return text, requests.post(rest_url, json={"sender": sender, "message": text}, timeout=120)

    def post_body(body_and_headers):
        body, headers = body_and_headers
        return body, requests.post(rest_url, data=body, headers=headers, timeout=120)

    with ThreadPoolExecutor(max_workers=4) as pool:
        message_results = list(pool.map(post_message, messages))
        body_results = list(pool.map(post_body, bodies))

    server_errors = [(text[:60], r.status_code, r.text[:200]) for text, r in message_results if r.status_code >= 500]
    server_errors += [(body[:60], r.status_code, r.text[:200]) for body, r in body_results if r.status_code >= 500]
    assert server_errors == []
    assert all(r.status_code == 200 for _, r in message_results)
    for text, response in message_results:
        replies = [m.get("text") for m in response.json()]
        if len(text.strip()) > max_message_chars():
            assert replies == [too_long]
        assert not any("Traceback" in (t or "") for t in replies)
    refused = [(body[:60], r.status_code) for body, r in body_results if r.status_code != 200]
    assert refused, "no malformed body was refused"
    assert all(400 <= status < 500 for _, status in refused)

    hello = requests.post(rest_url, json={"sender": f"fuzz-{run_id}-after", "message": "hi"}, timeout=120)
    assert hello.status_code == 200
    assert any(f"welcome to {SHOP_NAME}" in (m.get("text") or "") for m in hello.json())
    assert database_fingerprint(engine) == before


MALFORMED_PAYLOADS = [None, 42, "text", ["a"], {"session_id": 7, "message": "hi"}, {"message": 5}, {"message": ["x"]},
                      {"message": {"text": "hi"}}, {"message": "hi", "customData": "{not json"},
                      {"message": "hi", "customData": [1]}]
COULD_NOT_READ = "Sorry, I couldn't read that message."
# Sent to every fuzzed chat at the end; no fuzz message is this.
STILL_THERE = "hello, are you still there?"


class FuzzedWebChat(WebChatClient):
    def emit(self, data) -> None:
        """One packet per long-polling request, as the widget sends them: the server refuses a request
        that carries more than 16 packets ("Too many packets in payload") and drops that session."""
        self.client.emit("user_uttered", data)
        deadline = time.monotonic() + 60
        while not self.client.eio.queue.empty():
            assert time.monotonic() < deadline, "the socket.io client could not send its message"
            time.sleep(0.01)

    def say(self, text: str) -> None:
        self.emit({"message": text, "session_id": self.session_id})

    def received_texts(self) -> List[str]:
        texts = []
        while not self.replies.empty():
            texts.append(self.replies.get_nowait().get("text") or "")
        return texts


def settled_tracker(stack, session_id: str, sent: List[str], deadline: float) -> List[dict]:
    """The conversation's events once every message in `sent` is in (as Rasa stores it: card numbers
    masked, surrounding space stripped) and Rasa is listening again. A two-stage fallback adds user
    events of its own, so more user events than messages is fine."""
    # Every event, also those before a "/restart" (the API's default leaves them out).
    url = f"{stack.rasa_url}/conversations/{session_id}/tracker?include_events=ALL"
    wanted = Counter(mask_card_data(text).strip() for text in sent)
    while True:
        events = requests.get(url, timeout=60).json()["events"]
        missing = wanted - Counter(e.get("text") for e in events if e["event"] == "user")
        if not missing and events[-1].get("name") == "action_listen":
            return events
        assert time.monotonic() < deadline, f"{session_id}: not handled in time: {sorted(missing)[:5]}"
        time.sleep(0.5)


def replies_to_last(events: List[dict], text: str) -> List[str]:
    """The bot's texts in answer to the last user message `text`."""
    last = max(i for i, e in enumerate(events) if e["event"] == "user" and e.get("text") == text)
    answers = []
    for event in events[last + 1:]:
        if event["event"] == "user":
            break
        if event["event"] == "bot" and event.get("text"):
            answers.append(event["text"])
    return answers


def test_fuzzed_socketio_messages_and_payloads_leave_every_web_chat_answering_and_change_no_shop_data(stack):
    rng = random.Random(SEED + 1)
    engine = stack.engine()
    before = database_fingerprint(engine)
    run_id = uuid.uuid4().hex[:8]
    limit = max_message_chars()
    chats = [FuzzedWebChat(stack.rasa_url, f"fuzz-socket-{run_id}-{i}") for i in range(SOCKET_SESSIONS)]
    handled: Dict[str, List[str]] = {chat.session_id: [] for chat in chats}
    oversized = Counter()
    malformed = Counter()
    try:
        for i in range(SOCKET_MESSAGES):
            chat, text = chats[i % SOCKET_SESSIONS], random_message(rng)
            chat.say(text)
            if len(text) > limit:
                oversized[chat.session_id] += 1
            else:
                handled[chat.session_id].append(text)
        for i in range(SOCKET_PAYLOADS):
            chat = chats[i % SOCKET_SESSIONS]
            chat.emit(rng.choice(MALFORMED_PAYLOADS))
            malformed[chat.session_id] += 1

        # Once Rasa has worked through every chat's messages, each chat still answers.
        deadline = time.monotonic() + SOCKET_SETTLE_SECONDS
        for chat in chats:
            settled_tracker(stack, chat.session_id, handled[chat.session_id], deadline)
        for chat in chats:
            chat.say(STILL_THERE)
        for chat in chats:
            events = settled_tracker(stack, chat.session_id, handled[chat.session_id] + [STILL_THERE], deadline)
            answers = replies_to_last(events, STILL_THERE)
            assert answers and too_fast_reply() not in answers, f"{chat.session_id} answered {answers}"
            received = chat.received_texts()
            while not set(answers) <= set(received):
                received.append(chat.replies.get(timeout=60).get("text") or "")
            assert received.count(too_long_reply(limit)) == oversized[chat.session_id]
            assert sum(text.startswith(COULD_NOT_READ) for text in received) == malformed[chat.session_id]
            assert not any("Traceback" in text for text in received)
    finally:
        for chat in chats:
            chat.close()
    assert database_fingerprint(engine) == before
