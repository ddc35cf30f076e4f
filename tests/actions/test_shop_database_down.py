"""The shop database down, hung or slow: the real action server (ops/action_server.py) answers every
shop action honestly within 5 seconds, with an offer of a person, and works again once it is back.

The shop data lives on the real PostgreSQL server, reached through a TCP proxy the test controls
(tests/actions/tcp_proxy.py); the actions get real trackers (tests/actions/trackers.py) in the body
Rasa posts to /webhook. Each request is allowed 5 seconds: one that takes longer fails the test.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Dict, List

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ops.action_fallback import DEFAULT_MESSAGE, TALK_TO_A_PERSON
from ops.action_server import TOKEN_HEADER
from ops.servers import BIN, Server, free_port
from shop.db import create_schema, make_engine, session_scope
from tests.actions.tcp_proxy import TcpProxy
from tests.actions.trackers import entity, tracker_for
from tests.factories import add_product
from tests.unit.conftest import POSTGRES_URL

ANSWER_WITHIN_SECONDS = 5
TOKEN = "test-action-server-token"

# Shop actions of every kind: some catch the database error themselves, the others leave it to the server.
SHOP_ACTIONS = {
    "action_search_products": lambda: tracker_for("red sneakers", "search_product", [entity("category", "sneakers")],
                                                  slots={"category": "sneakers"}),
    "action_view_cart": lambda: tracker_for("what's in my cart", "view_cart"),
    "action_order_status": lambda: tracker_for("where is my order", "order_status"),
    "action_refund_status": lambda: tracker_for("where is my refund", "refund_status"),
}


class ActionServer:
    def __init__(self, url: str, proxy: TcpProxy, database_url: str, log: Path):
        self.url, self.proxy, self.database_url, self.log = url, proxy, database_url, log

    def call(self, action: str, headers: Dict[str, str] = None, sender: str = None) -> requests.Response:
        tracker = SHOP_ACTIONS.get(action, SHOP_ACTIONS["action_view_cart"])()
        tracker.sender_id = sender or tracker.sender_id
        body = {"next_action": action, "sender_id": tracker.sender_id, "tracker": tracker.current_state(),
                "domain": {}, "version": "3.6.21"}
        return requests.post(f"{self.url}/webhook", json=body, timeout=ANSWER_WITHIN_SECONDS,
                             headers={TOKEN_HEADER: TOKEN} if headers is None else headers)

    def replies(self, action: str) -> List[Dict]:
        response = self.call(action)
        assert response.status_code == 200, response.text
        return response.json()["responses"]


@pytest.fixture(scope="module")
def shop_database():
    """A database of its own on the test PostgreSQL server, with a small catalog."""
    admin = create_engine(POSTGRES_URL, future=True, isolation_level="AUTOCOMMIT")
    name = f"shop_faults_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name)
    engine = make_engine(url.render_as_string(hide_password=False))
    create_schema(engine)
    with session_scope(engine) as session:
        add_product(session, "Blaze Runner Sneaker", "Shoes", "Sneakers", "Stride", [("red", "42", 7499, 3)])
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def action_server(shop_database, tmp_path_factory):
    proxy = TcpProxy((shop_database.host or "127.0.0.1", shop_database.port or 5432))
    through_proxy = shop_database.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    port = free_port()
    log = tmp_path_factory.mktemp("faults") / "actions.log"
    server = Server("action server", [str(BIN / "python"), "-m", "ops.action_server", "--actions", "actions",
                                      "--port", str(port)],
                    {"SHOP_DATABASE_URL": through_proxy, "ACTION_SERVER_TOKEN": TOKEN,
                     "SHOP_DB_TIMEOUT_SECONDS": "2", "SANIC_HOST": "127.0.0.1", "SHOP_PUBLIC_URL": "http://shop.test"},
                    log)
    try:
        server.wait_until_ready(f"http://127.0.0.1:{port}/health", lambda r: r.ok, 120)
        yield ActionServer(f"http://127.0.0.1:{port}", proxy, shop_database.render_as_string(hide_password=False), log)
    finally:
        server.stop()
        proxy.close()


@pytest.fixture
def database_up(action_server):
    action_server.proxy.up()
    yield action_server
    action_server.proxy.up()


def assert_honest_offer_of_a_person(replies: List[Dict]) -> None:
    assert [r["text"] for r in replies] == [DEFAULT_MESSAGE]
    assert replies[0]["buttons"] == [TALK_TO_A_PERSON]


def assert_normal_answers(server: ActionServer) -> None:
    search = server.replies("action_search_products")
    assert "Blaze Runner Sneaker" in search[0]["text"]
    assert server.replies("action_view_cart")[0]["text"].startswith("Your cart is empty.")
    for action in ("action_order_status", "action_refund_status"):
        assert DEFAULT_MESSAGE not in [r.get("text") for r in server.replies(action)]


@pytest.mark.parametrize("action", sorted(SHOP_ACTIONS))
def test_database_down_gets_the_honest_message_and_a_person(database_up, action):
    database_up.proxy.down()

    assert_honest_offer_of_a_person(database_up.replies(action))


@pytest.mark.parametrize("action", sorted(SHOP_ACTIONS))
def test_hung_database_gets_the_honest_message_within_five_seconds(database_up, action):
    database_up.replies("action_view_cart")  # a pooled connection is open when the database hangs
    database_up.proxy.pause()

    assert_honest_offer_of_a_person(database_up.replies(action))


def test_a_table_locked_by_a_long_transaction_times_out_into_the_honest_message(database_up):
    blocker = create_engine(database_up.database_url, future=True)
    try:
        with blocker.connect() as conn:
            with conn.begin():
                conn.execute(text("LOCK TABLE products IN ACCESS EXCLUSIVE MODE"))
                replies = database_up.replies("action_search_products")
    finally:
        blocker.dispose()

    assert_honest_offer_of_a_person(replies)


def test_the_next_message_works_once_the_database_is_back(database_up):
    database_up.proxy.down()
    assert_honest_offer_of_a_person(database_up.replies("action_view_cart"))
    database_up.proxy.pause()
    assert_honest_offer_of_a_person(database_up.replies("action_search_products"))

    database_up.proxy.up()

    assert_normal_answers(database_up)


def test_only_callers_with_the_token_may_run_actions(database_up):
    assert database_up.call("action_view_cart", headers={}).status_code == 401
    assert database_up.call("action_view_cart", headers={TOKEN_HEADER: "guess"}).status_code == 401
    assert database_up.call("action_view_cart").status_code == 200
    assert requests.get(f"{database_up.url}/health", timeout=5).ok


def test_the_action_server_log_holds_no_email_address_or_card_number(database_up):
    email, card, street = "jane.doe@example.com", "4242 4242 4242 4242", "221 Baker Street"
    # The sender id reaches the SQL parameters that the database error is logged with.
    database_up.proxy.down()
    assert_honest_offer_of_a_person(database_up.call("action_view_cart", sender=email).json()["responses"])
    unknown = database_up.call(f"action_send_to {email} {card} at {street}")
    assert unknown.status_code == 404

    log = database_up.log.read_text()
    assert "[email hidden]" in log and "[card number hidden]" in log and "[address hidden]" in log
    assert email not in log and card not in log and street not in log
