import pytest

from shop.db import create_schema, make_engine, session_scope
from tests.factories import add_product


@pytest.fixture
def shop_engine(tmp_path, monkeypatch):
    """A fresh SQLite shop per test, which the actions reach through SHOP_DATABASE_URL."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    monkeypatch.setenv("SHOP_DATABASE_URL", url)
    monkeypatch.setenv("SHOP_PUBLIC_URL", "http://shop.test")
    engine = make_engine(url)
    create_schema(engine)
    with session_scope(engine) as session:
        add_product(session, "Blaze Runner Sneaker", "Shoes", "Sneakers", "Stride",
                    [("red", "42", 7499, 3), ("red", "43", 7499, 0), ("white", "42", 7999, 2)],
                    ratings=[5, 4])
        add_product(session, "Court Classic Sneaker", "Shoes", "Sneakers", "Kicks & Co",
                    [("red", "41", 5900, 1)])
        add_product(session, "Summit Pro Sneaker", "Shoes", "Sneakers", "Stride",
                    [("red", "42", 12900, 4)])
        add_product(session, "Harbor Denim Jacket", "Apparel", "Jackets", "Bluewater",
                    [("blue", "M", 8900, 5)])
    yield engine
    engine.dispose()
