"""Fixtures for the shop front: a real SQLite shop database with a few products, the real web
server (`python -m web`) in a subprocess on a free port, and rasa-webchat installed by npm."""
from __future__ import annotations

import asyncio
import os
import threading
import uuid
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator, List

import pytest
import requests

from shop.db import create_schema, make_engine, session_scope
from shop.models import Brand, Category, Product, Review, Variant

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = REPO_ROOT / "web"
WEBCHAT_BUNDLE = WEB_DIR / "node_modules" / "rasa-webchat" / "lib" / "index.js"
SERVER_START_TIMEOUT = 30.0
SHOP_NAME = "Test Trail Supply"

EVIL_TITLE = "<script>alert('pwned')</script> Sneaker"
EVIL_DESCRIPTION = 'Comfy. <img src=x onerror="alert(1)"> Really.'
BASIC_TEE_COUNT = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def webchat_installed() -> Path:
    """rasa-webchat in web/node_modules; installed from web/package-lock.json when missing."""
    if not WEBCHAT_BUNDLE.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install rasa-webchat (web/package.json) and is not on PATH"
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=WEB_DIR, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"npm ci failed in {WEB_DIR}:\n{result.stdout}\n{result.stderr}"
    assert WEBCHAT_BUNDLE.exists(), f"{WEBCHAT_BUNDLE} missing after npm ci"
    return WEBCHAT_BUNDLE


def _fill_shop(url: str) -> None:
    engine = make_engine(url)
    create_schema(engine)
    now = datetime(2024, 5, 1, 12, 0, 0)
    with session_scope(engine) as session:
        jackets = Category(name="Jackets", slug="jackets")
        footwear = Category(name="Footwear", slug="footwear")
        tops = Category(name="Tops", slug="tops")
        summit = Brand(name="Summit Co")
        ridge = Brand(name="Ridgeline")
        session.add_all([jackets, footwear, tops, summit, ridge])

        jacket = Product(
            handle="trailblazer-rain-jacket",
            title="Trailblazer Rain Jacket",
            description="A light waterproof shell.\n\nPacks into its own pocket.",
            category=jackets,
            brand=summit,
            product_type="Rain Jacket",
            material="Nylon",
            tags="rain,waterproof,jacket",
            image_url="/images/products/trailblazer-rain-jacket.svg",
            variants=[
                Variant(sku="TRJ-BLU-M", color="Blue", size="M", price_cents=8900,
                        compare_at_price_cents=12000, stock=5),
                Variant(sku="TRJ-BLU-L", color="Blue", size="L", price_cents=8900,
                        compare_at_price_cents=12000, stock=0),
                Variant(sku="TRJ-RED-M", color="Red", size="M", price_cents=9500, stock=2),
            ],
            reviews=[
                Review(rating=5, title="Kept me dry", body="Wore it all week in Wales.",
                       author_name="Ana", created_at=now - timedelta(days=30)),
                Review(rating=4, title="Good fit", body="Runs a little large.",
                       author_name="Ben", created_at=now - timedelta(days=20)),
                Review(rating=4, title="Latest thoughts", body="Still great after a month.",
                       author_name="Cleo", created_at=now - timedelta(days=1)),
            ],
        )
        boot = Product(
            handle="alpine-hiking-boot",
            title="Alpine Hiking Boot",
            description="Grippy sole, leather upper.",
            category=footwear,
            brand=ridge,
            product_type="Boot",
            image_url="",
            variants=[
                Variant(sku="AHB-BRN-42", color="Brown", size="42", price_cents=14999, stock=3),
                Variant(sku="AHB-BRN-43", color="Brown", size="43", price_cents=14999, stock=0),
            ],
            reviews=[Review(rating=5, title="Best boots", body="No blisters.", author_name="Dee",
                            created_at=now)],
        )
        evil = Product(
            handle="evil-sneaker",
            title=EVIL_TITLE,
            description=EVIL_DESCRIPTION,
            category=footwear,
            brand=ridge,
            product_type="Sneaker",
            image_url="javascript:alert(1)",
            variants=[Variant(sku="EVL-1", color="White", size="40", price_cents=5000, stock=1)],
        )
        hidden = Product(
            handle="secret-prototype",
            title="Secret Prototype Parka",
            category=jackets,
            brand=summit,
            published=False,
            variants=[Variant(sku="SEC-1", color="Black", size="M", price_cents=99900, stock=1)],
        )
        tees = [
            Product(
                handle=f"basic-tee-{n:02d}",
                title=f"Basic Tee {n:02d}",
                description="Soft cotton tee.",
                category=tops,
                brand=summit,
                product_type="T-Shirt",
                variants=[Variant(sku=f"TEE-{n:02d}", color="Grey", size="M", price_cents=1000 + n, stock=10)],
            )
            for n in range(1, BASIC_TEE_COUNT + 1)
        ]
        session.add_all([jacket, boot, evil, hidden, *tees])
    engine.dispose()


@pytest.fixture(scope="session")
def shop_database(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("web-shop") / "shop.db"
    url = f"sqlite:///{path}"
    _fill_shop(url)
    return url


def _wait_until_healthy(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last_error: object = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the web server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        try:
            response = requests.get(f"{base_url}/healthz", timeout=2)
            if response.status_code == 200 and response.text.strip() == "ok":
                return
            last_error = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last_error = exc
        time.sleep(0.1)
    raise AssertionError(
        f"the web server did not answer /healthz within {SERVER_START_TIMEOUT}s ({last_error}):\n"
        f"{log_path.read_text(errors='replace')}"
    )


@pytest.fixture(scope="session")
def rasa_socket_url() -> str:
    # A port nobody listens on: the widget must render without a Rasa server.
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def web_server(shop_database, webchat_installed, rasa_socket_url, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        {
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": str(port),
            "SHOP_DATABASE_URL": shop_database,
            "SHOP_NAME": SHOP_NAME,
            "RASA_SOCKET_URL": rasa_socket_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    log_path = tmp_path_factory.mktemp("web-log") / "server.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "web"], cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_healthy(base_url, process, log_path)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


class SocketStandIn:
    """Speaks the part of Rasa's socket.io channel that rasa-webchat uses (session_request ->
    session_confirm, user_uttered -> bot_uttered) so the browser test can check the widget's
    wiring and DOM without a trained model. Real-Rasa chats belong to tests/e2e."""

    def __init__(self, port: int):
        import socketio
        from aiohttp import web

        self.port = port
        self.received: List[dict] = []
        self._sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
        self._app = web.Application()
        self._sio.attach(self._app, socketio_path="socket.io")
        self._sio.on("session_request", self._session_request)
        self._sio.on("user_uttered", self._user_uttered)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner = None

    async def _session_request(self, sid, data):
        session_id = (data or {}).get("session_id") or uuid.uuid4().hex
        await self._sio.emit("session_confirm", session_id, room=sid)

    async def _user_uttered(self, sid, data):
        self.received.append(data)
        message = data.get("message", "")
        opening = message.startswith("/page_context")  # the page context the widget opens the chat with
        text = "Hi! I'm the shop assistant." if opening else f"You said: {message}"
        await self._sio.emit("bot_uttered", {"text": text}, room=sid)

    def _run(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self._app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()
        pending = [task for task in asyncio.all_tasks(self._loop) if not task.done()]
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _shutdown(self) -> None:
        await self._sio.eio.shutdown()  # closes the clients and the ping service task
        await self._runner.cleanup()

    def start(self) -> "SocketStandIn":
        self._thread.start()
        assert self._started.wait(10), "the socket.io stand-in did not start"
        return self

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@pytest.fixture
def rasa_socket_stand_in(rasa_socket_url) -> Iterator[SocketStandIn]:
    """Listens on RASA_SOCKET_URL of the running web server for the length of one test."""
    server = SocketStandIn(int(rasa_socket_url.rsplit(":", 1)[1])).start()
    try:
        yield server
    finally:
        server.stop()
