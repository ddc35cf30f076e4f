"""Soak test (#9, item 7): 100 conversations at once x 20 turns each, through the Rasa balancer of the
production profile (two replicas, PostgreSQL tracker store, Redis locks, RabbitMQ events), loopback only.

Zero lost messages: every message sent got an HTTP 200 with at least one reply, and the shared tracker
store holds every message once, in the order sent, each followed by its bot replies (the same texts the
shopper got) and `action_listen`, never interleaved with another turn. The load's figures (turns per
second, latency per turn) are written to results/soak/soak.json and printed; they are measured, not
asserted.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Tuple

import pytest
import requests

from ops.servers import REPO_ROOT
from tests.production.conftest import LOCK_TROUBLE
from tests.production.tracker_checks import assert_every_turn_complete_and_unmixed

CONVERSATIONS = int(os.environ.get("SOAK_CONVERSATIONS", "100"))
TURNS = int(os.environ.get("SOAK_TURNS", "20"))
SEED = 20261203
# 100 shoppers share two replicas on 2 cores: a turn waits for the ones queued before it.
TURN_TIMEOUT_SECONDS = 900
pytestmark = pytest.mark.timeout(3600)
SHOPPER_MESSAGES = [
    "hi", "hello there", "show me red sneakers under 80 dollars", "any blue jackets?", "cheaper please",
    "do you have black jeans", "what's your return policy", "how long does delivery take",
    "which payment methods do you accept", "do you ship abroad", "what can you do?", "thanks", "ok",
    "recommend a gift for my dad", "where is my order", "are there any discounts right now", "bye",
]


def script(rng: random.Random) -> List[str]:
    return [rng.choice(SHOPPER_MESSAGES) for _ in range(TURNS)]


def converse(rasa_url: str, sender: str, messages: List[str]) -> List[Tuple[float, int, List[Dict]]]:
    """Each message in turn, as one shopper: (seconds, HTTP status, replies) per message."""
    results = []
    with requests.Session() as session:
        for message in messages:
            started = time.monotonic()
            response = session.post(f"{rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": message},
                                    timeout=TURN_TIMEOUT_SECONDS)
            replies = response.json() if response.status_code == 200 else []
            results.append((time.monotonic() - started, response.status_code, replies))
    return results


def percentile(values: List[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def test_100_conversations_x_20_turns_at_once_lose_no_message(scaled):
    scaled.wait_until_every_replica_answers()
    rng = random.Random(SEED)
    run_id = uuid.uuid4().hex[:8]
    scripts = {f"soak-{run_id}-{i}": script(rng) for i in range(CONVERSATIONS)}

    started = time.monotonic()
    with ThreadPoolExecutor(CONVERSATIONS) as pool:
        futures = {sender: pool.submit(converse, scaled.rasa_url, sender, messages)
                   for sender, messages in scripts.items()}
        results = {sender: future.result() for sender, future in futures.items()}
    seconds = time.monotonic() - started

    latencies = [latency for turns in results.values() for latency, _, _ in turns]
    figures = {"conversations": CONVERSATIONS, "turns_per_conversation": TURNS, "turns": len(latencies),
               "seconds": round(seconds, 1), "turns_per_second": round(len(latencies) / seconds, 2),
               "latency_p50_ms": round(statistics.median(latencies) * 1000),
               "latency_p99_ms": round(percentile(latencies, 0.99) * 1000),
               "latency_max_ms": round(max(latencies) * 1000)}
    out = REPO_ROOT / "results" / "soak"
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nsoak: {json.dumps(figures)}")

    failed = [(sender, status) for sender, turns in results.items() for _, status, replies in turns
              if status != 200 or not replies]
    assert failed == [], f"{len(failed)} of {len(latencies)} messages got no answer"
    for sender, messages in scripts.items():
        rows = scaled.tracker_rows(sender)
        assert [json.loads(r["data"])["text"] for r in rows if r["type_name"] == "user"] == messages, sender
        assert_every_turn_complete_and_unmixed(rows)
        stored_replies = [json.loads(r["data"]).get("text") for r in rows if r["type_name"] == "bot"]
        answered = [reply.get("text") for _, _, replies in results[sender] for reply in replies]
        assert [t for t in stored_replies if t] == [t for t in answered if t], sender
    assert not LOCK_TROUBLE.search(scaled.rasa_logs())
