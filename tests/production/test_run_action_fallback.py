"""`make run` (scripts/run.sh, one Rasa server, no Rasa balancer) with its action server killed: the
shopper gets the honest message and the offer of a person instead of silence, and the restarted
action server answers the next message as before (#9, item 5)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from ops.action_fallback import DEFAULT_MESSAGE, TALK_TO_A_PERSON
from ops.servers import Server, free_port
from tests.e2e.conftest import MODEL

pytestmark = pytest.mark.timeout(900)
SEARCH = "show me red sneakers under 80 dollars"


@pytest.fixture(scope="module")
def run_sh(tmp_path_factory):
    workdir: Path = tmp_path_factory.mktemp("run")
    rasa_port, action_port, action_server_port, web_port = free_port(), free_port(), free_port(), free_port()
    endpoints = workdir / "endpoints.yml"
    endpoints.write_text(f'action_endpoint:\n  url: "http://127.0.0.1:{action_port}/webhook"\n'
                         f'tracker_store:\n  type: SQL\n  dialect: "sqlite"\n  db: "{workdir / "tracker.db"}"\n')
    env = {"SHOP_DATABASE_URL": f"sqlite:///{workdir / 'shop.db'}", "SHOP_LOG_DIR": str(workdir),
           "RASA_MODEL": str(MODEL), "RASA_ENDPOINTS": str(endpoints), "RASA_PORT": str(rasa_port),
           "ACTION_PORT": str(action_port), "ACTION_SERVER_PORT": str(action_server_port),
           "WEB_PORT": str(web_port), "TF_CPP_MIN_LOG_LEVEL": "3"}
    server = Server("run.sh", ["bash", "scripts/run.sh"], env, workdir / "run.log")
    try:
        server.wait_until_ready(f"http://127.0.0.1:{rasa_port}/status",
                                lambda r: r.ok and bool(r.json().get("model_file")), 800)
        server.wait_until_ready(f"http://127.0.0.1:{action_server_port}/health", lambda r: r.ok, 120)
        yield f"http://127.0.0.1:{rasa_port}", workdir, action_server_port
    finally:
        server.stop()


def say(rasa_url: str, sender: str, text: str):
    response = requests.post(f"{rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_killed_action_server_gets_the_honest_message_then_answers_again(run_sh):
    rasa_url, workdir, action_server_port = run_sh
    pid_file = workdir / f"actions-{action_server_port}.pid"
    killed = int(pid_file.read_text())
    os.kill(killed, signal.SIGSTOP)  # hung first: the balancer's timeout answers for it
    try:
        replies = say(rasa_url, "run-shopper", SEARCH)
    finally:
        os.kill(killed, signal.SIGKILL)
        os.kill(killed, signal.SIGCONT)
    assert [r.get("text") for r in replies] == [DEFAULT_MESSAGE]
    assert replies[0]["buttons"] == [TALK_TO_A_PERSON]

    assert [r.get("text") for r in say(rasa_url, "run-shopper-2", SEARCH)] == [DEFAULT_MESSAGE]  # down

    deadline = time.monotonic() + 120
    while True:  # the supervisor starts it again
        try:
            if int(pid_file.read_text()) != killed and requests.get(
                    f"http://127.0.0.1:{action_server_port}/health", timeout=2).ok:
                break
        except (requests.RequestException, ValueError):
            pass
        assert time.monotonic() < deadline, "the action server was not started again"
        time.sleep(0.5)
    # The conversation that got the honest message goes on where it was.
    texts = [r.get("text") or "" for r in say(rasa_url, "run-shopper", SEARCH)]
    assert any("red sneakers under $80" in t for t in texts), texts
