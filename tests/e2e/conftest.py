"""One real stack for the end-to-end tests: a seeded shop, the action server, Rasa and the shop front."""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import pytest

from shop.db import make_engine
from shop.handoff import hash_password
from ops.servers import BIN, REPO_ROOT, Server, free_port, run_checked
from tests.unit.service_helpers import smtp_server

MODEL = Path(os.environ.get("RASA_MODEL") or REPO_ROOT / "models" / "shop.tar.gz")
SHOP_NAME = "E2E Test Outfitters"
# The agent console login of the human-handoff tests.
AGENT_NAME, AGENT_PASSWORD = "alice", "e2e-agent-password"
# A left cart is reminded after this many quiet seconds; no worker runs except in the recovery test.
CART_REMINDER_DELAY_SECONDS = 6


@dataclass
class Stack:
    rasa_url: str
    web_url: str
    database_url: str
    workdir: Path
    env: Dict[str, str]

    def engine(self):
        return make_engine(self.database_url)

    def shop(self, *args: str) -> str:
        """`python -m shop ARGS` on the stack's database, as the store team runs it; its output."""
        return run_checked([str(BIN / "python"), "-m", "shop", *args], self.env)


@pytest.fixture(scope="session")
def mailbox():
    """A real local SMTP server (aiosmtpd) that the action server sends one-time codes to."""
    with smtp_server() as inbox:
        yield inbox


@pytest.fixture(scope="session")
def stack(tmp_path_factory, mailbox):
    if not MODEL.exists():
        pytest.fail(f"No trained model at {MODEL}: run `make train` first (make test does).")
    workdir: Path = tmp_path_factory.mktemp("stack")
    database_url = f"sqlite:///{workdir / 'shop.db'}"
    rasa_port, action_port, web_port = free_port(), free_port(), free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    env = {
        "SHOP_DATABASE_URL": database_url,
        "SHOP_NAME": SHOP_NAME,
        "SHOP_PUBLIC_URL": web_url,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "SMTP_HOST": mailbox.host,
        "SMTP_PORT": str(mailbox.port),
        # Human handoff: agents on duty around the clock; shoppers wait long enough to be claimed.
        "SHOP_SUPPORT_HOURS": "00:00-24:00",
        "SHOP_SUPPORT_DAYS": "mon-sun",
        "SHOP_HANDOFF_WAIT_SECONDS": "600",
        "SHOP_AGENTS": f"{AGENT_NAME}:{hash_password(AGENT_PASSWORD)}",
        "SHOP_CART_REMINDER_DELAY_SECONDS": str(CART_REMINDER_DELAY_SECONDS),
    }
    run_checked(
        [str(BIN / "python"), "-m", "shop", "seed", "--products", "300", "--reviews", "600",
         "--customers", "60", "--orders", "400"],
        env,
    )
    endpoints = workdir / "endpoints.yml"
    endpoints.write_text(
        f'action_endpoint:\n  url: "http://127.0.0.1:{action_port}/webhook"\n'
        f'tracker_store:\n  type: SQL\n  dialect: "sqlite"\n  db: "{workdir / "tracker.db"}"\n'
    )

    servers = []
    try:
        actions = Server("action server", [str(BIN / "rasa"), "run", "actions", "--port", str(action_port)],
                         env, workdir / "actions.log")
        servers.append(actions)
        rasa = Server(
            "rasa server",
            [str(BIN / "rasa"), "run", "--model", str(MODEL), "--enable-api", "-i", "127.0.0.1",
             "-p", str(rasa_port), "--endpoints", str(endpoints), "--credentials", "credentials.yml",
             "--cors", "*"],
            env, workdir / "rasa.log",
        )
        servers.append(rasa)
        web = Server("web front", [str(BIN / "python"), "-m", "web"],
                     {**env, "WEB_HOST": "127.0.0.1", "WEB_PORT": str(web_port),
                      "RASA_SOCKET_URL": f"http://127.0.0.1:{rasa_port}",
                      "RASA_URL": f"http://127.0.0.1:{rasa_port}",
                      "ANALYTICS_TRACKER_STORE_URL": f"sqlite:///{workdir / 'tracker.db'}",
                      "ANALYTICS_INGEST_SECONDS": "2"},
                     workdir / "web.log")
        servers.append(web)

        actions.wait_until_ready(f"http://127.0.0.1:{action_port}/health", lambda r: r.ok, 120)
        web.wait_until_ready(f"{web_url}/healthz", lambda r: r.ok, 60)
        rasa.wait_until_ready(
            f"http://127.0.0.1:{rasa_port}/status",
            lambda r: r.ok and bool(r.json().get("model_file")),
            240,
        )
        rasa_url = f"http://127.0.0.1:{rasa_port}"
        yield Stack(rasa_url, web_url, database_url, workdir, {**env, "RASA_URL": rasa_url})
    finally:
        for server in reversed(servers):
            server.stop()
