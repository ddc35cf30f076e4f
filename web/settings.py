"""Settings of the shop front, each from an environment variable with a sane default.

| variable               | default                 | meaning                                         |
| ---------------------- | ----------------------- | ----------------------------------------------- |
| WEB_HOST               | 127.0.0.1               | interface the shop front listens on             |
| WEB_PORT               | 8000                    | port the shop front listens on                  |
| SHOP_NAME              | Northwind Outfitters    | shop name in pages and the chat widget title    |
| RASA_SOCKET_URL        | http://localhost:5005   | Rasa socket.io channel, as seen by the browser  |
| SHOP_CURRENCY_SYMBOL   | $                       | symbol printed before prices                    |

The shop database comes from SHOP_DATABASE_URL (see shop/db.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import urlsplit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_SHOP_NAME = "Northwind Outfitters"
DEFAULT_RASA_SOCKET_URL = "http://localhost:5005"
DEFAULT_CURRENCY_SYMBOL = "$"
# Rasa's socket.io channel (credentials.yml `socketio:`) listens at this path.
RASA_SOCKET_PATH = "/socket.io/"


class SettingsError(ValueError):
    """A setting has a value the shop front cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    shop_name: str = DEFAULT_SHOP_NAME
    rasa_socket_url: str = DEFAULT_RASA_SOCKET_URL
    rasa_socket_path: str = RASA_SOCKET_PATH
    currency_symbol: str = DEFAULT_CURRENCY_SYMBOL

    @property
    def rasa_origins(self) -> tuple:
        """Origins the browser talks to for the chat (http(s) for polling, ws(s) for websocket)."""
        parts = urlsplit(self.rasa_socket_url)
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        return (f"{parts.scheme}://{parts.netloc}", f"{ws_scheme}://{parts.netloc}")


def _port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"WEB_PORT must be a whole number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise SettingsError(f"WEB_PORT must be between 1 and 65535, got {port}")
    return port


def _socket_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(
            f"RASA_SOCKET_URL must be an http(s) URL like {DEFAULT_RASA_SOCKET_URL}, got {raw!r}"
        )
    return raw.rstrip("/")


def load_settings(environ: Optional[Mapping[str, str]] = None) -> Settings:
    env = os.environ if environ is None else environ

    def get(name: str, default: str) -> str:
        value = env.get(name, "").strip()
        return value or default

    return Settings(
        host=get("WEB_HOST", DEFAULT_HOST),
        port=_port(get("WEB_PORT", str(DEFAULT_PORT))),
        shop_name=get("SHOP_NAME", DEFAULT_SHOP_NAME),
        rasa_socket_url=_socket_url(get("RASA_SOCKET_URL", DEFAULT_RASA_SOCKET_URL)),
        currency_symbol=get("SHOP_CURRENCY_SYMBOL", DEFAULT_CURRENCY_SYMBOL),
    )
