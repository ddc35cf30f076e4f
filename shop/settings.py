"""Shop-wide settings read from the environment, shared by the actions, the web front and the CLI."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ShopSettings:
    name: str
    public_url: str
    currency_symbol: str


def shop_settings() -> ShopSettings:
    """Read on each call so tests and long-running servers see the environment they were started with."""
    return ShopSettings(
        name=os.environ.get("SHOP_NAME", "Northwind Outfitters"),
        public_url=os.environ.get("SHOP_PUBLIC_URL", "http://localhost:8000").rstrip("/"),
        currency_symbol=os.environ.get("SHOP_CURRENCY_SYMBOL", "$"),
    )


def absolute_url(path_or_url: str) -> str:
    """Turn a shop path such as /products/x into a link a chat client can open."""
    if not path_or_url or path_or_url.startswith(("http://", "https://")):
        return path_or_url
    return f"{shop_settings().public_url}/{path_or_url.lstrip('/')}"
