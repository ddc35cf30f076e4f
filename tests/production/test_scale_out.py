"""Scale-out on the production profile: `scripts/run_scaled.sh` with two Rasa replicas and two action
servers behind round-robin balancers, on the real local PostgreSQL, Redis and RabbitMQ.

Each run gets its own shop database, tracker database, Redis key prefix and RabbitMQ queue, all
removed afterwards.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shop.db import make_engine
from ops.action_fallback import DEFAULT_MESSAGE, TALK_TO_A_PERSON
from tests.e2e.catalog_checks import assert_are_red_sneakers_under
from tests.e2e.conftest import MODEL
from ops.servers import BIN, Server, free_port, run_checked
from tests.unit.conftest import POSTGRES_URL

SHOP_NAME = "Scaled Outfitters"
RASA_TOKEN = "scale-out-test-token"
LISTED_PRODUCT = re.compile(r"^\d+\. (.+?) by .+?: \$\d", re.MULTILINE)
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 1
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
LOCK_TROUBLE = re.compile(r"LockError|Could not acquire lock|Lock .* expired", re.IGNORECASE)
# Two Rasa servers load their models at once: about a minute on 2 quiet cores, far longer on busy ones.
pytestmark = pytest.mark.timeout(1500)


@dataclass
class ScaledStack:
    rasa_url: str
    replica_urls: List[str]
    action_replica_ports: List[int]
    shop_url: str
    tracker_url: str
    redis_key_prefix: str
    queue: str
    log_dir: Path

    def say(self, sender: str, message: str, via: str = None) -> requests.Response:
        """Send through the balancer, or straight to the Rasa replica at `via`."""
        response = requests.post(f"{via or self.rasa_url}/webhooks/rest/webhook",
                                 json={"sender": sender, "message": message}, timeout=120)
        assert response.status_code == 200, response.text
        return response

    def tracker_rows(self, sender: str) -> List[Dict]:
        """The conversation's rows in the replicas' shared PostgreSQL tracker store, in storage order."""
        engine = create_engine(self.tracker_url, future=True)
        try:
            with engine.connect() as connection:
                rows = connection.execute(text(
                    "SELECT id, type_name, action_name, timestamp, data FROM events "
                    "WHERE sender_id = :sender ORDER BY id"), {"sender": sender}).mappings().all()
        finally:
            engine.dispose()
        return [dict(row) for row in rows]

    def pid_of(self, server_log_name: str) -> int:
        """The process id of a supervised server (run_scaled.sh keeps it beside the server's log)."""
        return int((self.log_dir / f"{server_log_name}.pid").read_text())

    def rasa_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("rasa-*.log")))


def _admin_engine():
    return create_engine(make_url(POSTGRES_URL).set(database="postgres"), future=True, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    if not MODEL.exists():
        pytest.fail(f"No trained model at {MODEL}: run `make train` first (make test does).")
    workdir: Path = tmp_path_factory.mktemp("scaled")
    run_id = uuid.uuid4().hex[:10]
    server_url = make_url(POSTGRES_URL)
    shop_url = server_url.set(database=f"shop_scaled_{run_id}").render_as_string(hide_password=False)
    tracker_db = f"rasa_scaled_{run_id}"
    rasa_port, action_port, web_port = free_port(), free_port(), free_port()
    rasa_replicas, action_replicas = [free_port(), free_port()], [free_port(), free_port()]
    env = {
        "SHOP_PROFILE": "production",
        "SHOP_DATABASE_URL": shop_url,
        "SHOP_NAME": SHOP_NAME,
        "SHOP_LOG_DIR": str(workdir),
        "RASA_MODEL": str(MODEL),
        "RASA_PORT": str(rasa_port),
        "RASA_REPLICA_PORTS": " ".join(map(str, rasa_replicas)),
        "ACTION_PORT": str(action_port),
        "ACTION_REPLICA_PORTS": " ".join(map(str, action_replicas)),
        "WEB_PORT": str(web_port),
        "TRACKER_DB_HOST": server_url.host or "127.0.0.1",
        "TRACKER_DB_PORT": str(server_url.port or 5432),
        "TRACKER_DB_USER": server_url.username or "postgres",
        "TRACKER_DB_PASSWORD": server_url.password or "",
        "TRACKER_DB_NAME": tracker_db,
        "TRACKER_DB_LOGIN_DB": "postgres",
        "REDIS_HOST": REDIS_HOST,
        "REDIS_PORT": str(REDIS_PORT),
        "REDIS_DB": str(REDIS_DB),
        "REDIS_KEY_PREFIX": f"shopscaled{run_id}",
        "RABBITMQ_QUEUE": f"rasa_events_{run_id}",
        # Generous on a loaded test machine; the fault test below needs no timeout (refused connections).
        "ACTION_TIMEOUT_SECONDS": "15",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        # The production profile's HTTP API needs a token (one is made per run when none is given).
        "RASA_TOKEN": RASA_TOKEN,
    }
    # A small store, so that the script's own `seed --if-empty` finds it and leaves it alone.
    run_checked([str(BIN / "python"), "-m", "shop", "seed", "--products", "300", "--reviews", "200",
                 "--customers", "30", "--orders", "60", "--quiet"], env)
    stack = Server("run_scaled.sh", ["bash", "scripts/run_scaled.sh"], env, workdir / "run_scaled.log")
    try:
        replica_urls = [f"http://127.0.0.1:{port}" for port in rasa_replicas]
        for url in replica_urls + [f"http://127.0.0.1:{rasa_port}"]:
            stack.wait_until_ready(f"{url}/status?token={RASA_TOKEN}", lambda r: r.ok and bool(r.json().get("model_file")), 1100)
        for port in action_replicas:
            stack.wait_until_ready(f"http://127.0.0.1:{port}/health", lambda r: r.ok, 60)
        yield ScaledStack(
            rasa_url=f"http://127.0.0.1:{rasa_port}", replica_urls=replica_urls,
            action_replica_ports=action_replicas, shop_url=shop_url,
            tracker_url=server_url.set(database=tracker_db).render_as_string(hide_password=False),
            redis_key_prefix=env["REDIS_KEY_PREFIX"], queue=env["RABBITMQ_QUEUE"], log_dir=workdir,
        )
    finally:
        stack.stop()
        admin = _admin_engine()
        with admin.connect() as connection:
            for database in (make_url(shop_url).database, tracker_db):
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
        asyncio.run(_delete_queue(env["RABBITMQ_QUEUE"]))
        _delete_redis_keys(env["REDIS_KEY_PREFIX"])


def _delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    try:
        keys = client.keys(f"{prefix}:*")
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def _delete_queue(name: str) -> None:
    import aio_pika

    connection = await aio_pika.connect_robust(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


async def _broker_events(queue_name: str) -> List[Dict]:
    """Every event Rasa has published to the run's RabbitMQ queue (taken off the queue)."""
    import aio_pika

    connection = await aio_pika.connect_robust(RABBITMQ_URL)
    events = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        while True:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                return events
            events.append(json.loads(message.body))


def turns(rows: List[Dict]) -> List[List[Dict]]:
    """The rows cut at each user message: one list per turn, starting with that message."""
    cut = []
    for row in rows:
        if row["type_name"] == "user":
            cut.append([])
        if cut:
            cut[-1].append(row)
    return cut


def assert_every_turn_complete_and_unmixed(rows: List[Dict]) -> None:
    for turn in turns(rows):
        names = [r["action_name"] for r in turn if r["type_name"] == "action"]
        assert names and names[-1] == "action_listen", f"a turn was cut into by another: {names}"
        assert any(r["type_name"] == "bot" for r in turn), "a turn had no bot reply"
    stamps = [r["timestamp"] for r in rows]
    assert stamps == sorted(stamps), "events are stored out of order"
    identities = [(r["type_name"], r["timestamp"], r["data"]) for r in rows]
    assert len(set(identities)) == len(identities), "an event was stored twice"


def test_turns_alternate_between_replicas_and_the_tracker_keeps_every_event_once(scaled):
    sender = f"scaled-{uuid.uuid4().hex[:8]}"
    messages = ["hello", "show me red sneakers under 80 dollars", "cheaper", "thanks", "bye"]

    # Straight to the replicas in turn (the shop front's own calls through the balancer would shift its turns).
    replies = [scaled.say(sender, message, via=scaled.replica_urls[i % 2]).json()
               for i, message in enumerate(messages)]

    assert all(reply for reply in replies), replies
    assert f"welcome to {SHOP_NAME}" in replies[0][0]["text"]
    listing = "\n".join(r.get("text", "") for r in replies[1])
    shop_engine = make_engine(scaled.shop_url)
    try:
        assert_are_red_sneakers_under(shop_engine, LISTED_PRODUCT.findall(listing), 8000)
    finally:
        shop_engine.dispose()

    rows = scaled.tracker_rows(sender)
    assert [json.loads(r["data"])["text"] for r in rows if r["type_name"] == "user"] == messages
    assert len(turns(rows)) == len(messages)
    assert_every_turn_complete_and_unmixed(rows)
    bot_texts = [json.loads(r["data"]).get("text") for r in rows if r["type_name"] == "bot"]
    assert [t for t in bot_texts if t] == [r["text"] for reply in replies for r in reply if r.get("text")]
    assert not LOCK_TROUBLE.search(scaled.rasa_logs())


def test_every_stored_event_is_published_to_rabbitmq(scaled):
    sender = f"broker-{uuid.uuid4().hex[:8]}"
    for i, message in enumerate(["hello", "thanks"]):
        scaled.say(sender, message, via=scaled.replica_urls[i % 2])

    rows = scaled.tracker_rows(sender)
    assert len(rows) > 4
    # Rasa publishes in the background after replying: collect until all arrived or 10 s passed.
    published, deadline = [], time.monotonic() + 10
    while len(published) < len(rows) and time.monotonic() < deadline:
        published += [e for e in asyncio.run(_broker_events(scaled.queue)) if e["sender_id"] == sender]
    assert [(e["event"], e["timestamp"]) for e in published] == [(r["type_name"], r["timestamp"]) for r in rows]


def test_concurrent_messages_to_one_conversation_are_served_one_at_a_time(scaled):
    sender = f"burst-{uuid.uuid4().hex[:8]}"
    messages = ["hello", "hi there", "good morning", "hey", "thanks", "thank you"]

    with ThreadPoolExecutor(len(messages)) as pool:
        responses = list(pool.map(lambda i: scaled.say(sender, messages[i], via=scaled.replica_urls[i % 2]),
                                  range(len(messages))))

    assert all(r.json() for r in responses)
    rows = scaled.tracker_rows(sender)
    user_texts = [json.loads(r["data"])["text"] for r in rows if r["type_name"] == "user"]
    assert sorted(user_texts) == sorted(messages)
    assert_every_turn_complete_and_unmixed(rows)
    assert not LOCK_TROUBLE.search(scaled.rasa_logs())


def test_a_conversation_waits_while_another_replica_holds_its_redis_lock(scaled):
    from rasa.core.lock_store import RedisLockStore

    sender = f"locked-{uuid.uuid4().hex[:8]}"
    locks = RedisLockStore(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, key_prefix=scaled.redis_key_prefix)
    held = locks.issue_ticket(sender, lock_lifetime=120)

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(scaled.say, sender, "hello")
        # The replica queues its own ticket behind the one held here, and waits for its turn.
        deadline = time.monotonic() + 60
        while len(locks.get_lock(sender).tickets) < 2:
            finished, _ = wait([pending], timeout=0.2)
            assert not finished, f"answered while the lock was held: {pending.result().text}"
            assert time.monotonic() < deadline, "no replica queued for the conversation's lock"
        assert not pending.done()
        assert scaled.tracker_rows(sender) == []

        locks.finish_serving(sender, held)
        reply = pending.result(timeout=120).json()

    assert f"welcome to {SHOP_NAME}" in reply[0]["text"]
    assert [r["type_name"] for r in scaled.tracker_rows(sender)].count("user") == 1
    assert locks.get_lock(sender) is None or not locks.get_lock(sender).tickets


# The fault tests come last: they kill servers (run_scaled.sh starts them again).

def wait_until_answering(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not come back within {timeout}s")


def test_with_every_action_server_down_the_shopper_hears_why_and_gets_a_person_offered(scaled):
    sender = f"down-{uuid.uuid4().hex[:8]}"
    assert f"welcome to {SHOP_NAME}" in scaled.say(sender, "hello").json()[0]["text"]
    killed = {port: scaled.pid_of(f"actions-{port}") for port in scaled.action_replica_ports}
    for pid in killed.values():
        os.kill(pid, signal.SIGKILL)

    started = time.monotonic()
    replies = scaled.say(sender, "show me red sneakers under 80 dollars").json()
    seconds = time.monotonic() - started

    assert seconds < 5, seconds
    assert replies[0] == {"recipient_id": sender, "text": DEFAULT_MESSAGE, "buttons": [TALK_TO_A_PERSON]}
    assert [r.get("text") for r in replies].count(DEFAULT_MESSAGE) == 1

    for port in scaled.action_replica_ports:  # the supervisor starts them again
        wait_until_answering(f"http://127.0.0.1:{port}/health", 180)
        assert scaled.pid_of(f"actions-{port}") != killed[port]
    replies = scaled.say(sender, "show me red sneakers under 80 dollars").json()
    listing = "\n".join(r.get("text", "") for r in replies)
    shop_engine = make_engine(scaled.shop_url)
    try:
        assert_are_red_sneakers_under(shop_engine, LISTED_PRODUCT.findall(listing), 8000)
    finally:
        shop_engine.dispose()


def test_a_replica_killed_mid_conversation_loses_nothing(scaled):
    sender = f"crash-{uuid.uuid4().hex[:8]}"
    first = scaled.say(sender, "show me red sneakers under 80 dollars")
    crashed = first.headers["X-Upstream"]
    os.kill(scaled.pid_of(f"rasa-{crashed.rsplit(':', 1)[1]}"), signal.SIGKILL)

    second = scaled.say(sender, "in black instead")
    third = scaled.say(sender, "thanks")

    assert {second.headers["X-Upstream"], third.headers["X-Upstream"]} == set(scaled.replica_urls) - {crashed}
    assert second.json() and third.json()
    survivor = second.headers["X-Upstream"]
    slots = requests.get(f"{survivor}/conversations/{sender}/tracker",
                         params={"token": RASA_TOKEN}, timeout=30).json()["slots"]
    assert slots["color"] == "black"
    assert slots["category"] and slots["price_max"]  # from the turn the crashed replica handled
    rows = scaled.tracker_rows(sender)
    assert [json.loads(r["data"])["text"] for r in rows if r["type_name"] == "user"] == [
        "show me red sneakers under 80 dollars", "in black instead", "thanks"]
    assert_every_turn_complete_and_unmixed(rows)
