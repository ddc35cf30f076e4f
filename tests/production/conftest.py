"""The production profile's stack for these tests: `scripts/run_scaled.sh` with two Rasa replicas and two
action servers behind round-robin balancers, on the real local PostgreSQL, Redis and RabbitMQ. Started
once for the whole package (both replicas load the model, minutes on 2 busy cores).

Each run gets its own shop database, tracker database, Redis key prefix and RabbitMQ queue, all
removed afterwards. Rasa reaches RabbitMQ through a TCP proxy that the broker fault test breaks.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ops.servers import BIN, Server, free_port, run_checked
from tests.actions.tcp_proxy import TcpProxy
from tests.e2e.conftest import MODEL
from tests.unit.conftest import POSTGRES_URL

SHOP_NAME = "Scaled Outfitters"
RASA_TOKEN = "scale-out-test-token"
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 1
RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672
RABBITMQ_URL = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/"
LOCK_TROUBLE = re.compile(r"LockError|Could not acquire lock|Lock .* expired", re.IGNORECASE)


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
    rabbitmq: TcpProxy
    supervisor: Server  # scripts/run_scaled.sh, which starts a stopped server again

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

    def published_events(self) -> List[Dict]:
        """Every event Rasa has published to the run's RabbitMQ queue since the last call (taken off it)."""
        return asyncio.run(_broker_events(self.queue))

    def wait_until_every_replica_answers(self, timeout: float = 900) -> None:
        """Until each Rasa replica (one killed by an earlier test is started again) has its model loaded."""
        for url in self.replica_urls:
            self.supervisor.wait_until_ready(f"{url}/status?token={RASA_TOKEN}", model_loaded, timeout)

    def kill(self, server: str, port: int) -> int:
        """SIGKILL the supervised `server` ("rasa" or "actions") on `port`; returns its process id."""
        pid = self.pid_of(f"{server}-{port}")
        kill(pid, port)
        return pid

    def rasa_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("rasa-*.log")))


def kill(pid: int, port: int, timeout: float = 60) -> None:
    """SIGKILL the server `pid` and return once its `port` refuses connections. A big process takes a
    while to die (its main thread is a zombie while the others still exit) and until then its listening
    socket takes connections that are then reset; the balancer retries only refused ones, since a broken
    connection may have been handled, so a message sent in that moment gets a 504."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {port} still takes connections {timeout}s after SIGKILL of {pid}")
        time.sleep(0.05)


def model_loaded(status: requests.Response) -> bool:
    return status.ok and bool(status.json().get("model_file"))


def _admin_engine():
    return create_engine(make_url(POSTGRES_URL).set(database="postgres"), future=True, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="package")
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
    rabbitmq = TcpProxy((RABBITMQ_HOST, RABBITMQ_PORT))
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
        "RABBITMQ_HOST": "127.0.0.1",
        "RABBITMQ_PORT": str(rabbitmq.port),
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
            stack.wait_until_ready(f"{url}/status?token={RASA_TOKEN}", model_loaded, 1100)
        for port in action_replicas:
            stack.wait_until_ready(f"http://127.0.0.1:{port}/health", lambda r: r.ok, 60)
        yield ScaledStack(
            rasa_url=f"http://127.0.0.1:{rasa_port}", replica_urls=replica_urls,
            action_replica_ports=action_replicas, shop_url=shop_url,
            tracker_url=server_url.set(database=tracker_db).render_as_string(hide_password=False),
            redis_key_prefix=env["REDIS_KEY_PREFIX"], queue=env["RABBITMQ_QUEUE"], log_dir=workdir,
            rabbitmq=rabbitmq, supervisor=stack,
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
        rabbitmq.close()


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
