"""The single schema of the shop. Money is stored as integer cents to stay exact on every database."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import declarative_base, relationship

Base = declarative_base()


def _now() -> datetime:
    return datetime.utcnow()


ORDER_STATUSES = (
    "pending_payment",
    "paid",
    "packed",
    "shipped",
    "delivered",
    "cancelled",
    "return_requested",
    "returned",
    "refunded",
)


class Category(Base):
    __tablename__ = "categories"
    id = Column(Integer, primary_key=True)
    name = Column(String(80), nullable=False, unique=True)
    slug = Column(String(80), nullable=False, unique=True)

    products = relationship("Product", back_populates="category")


class Brand(Base):
    __tablename__ = "brands"
    id = Column(Integer, primary_key=True)
    name = Column(String(120), nullable=False, unique=True)

    products = relationship("Product", back_populates="brand")


class Product(Base):
    __tablename__ = "products"
    id = Column(Integer, primary_key=True)
    handle = Column(String(200), nullable=False, unique=True)
    title = Column(String(255), nullable=False)
    description = Column(Text, nullable=False, default="")
    category_id = Column(Integer, ForeignKey("categories.id"), index=True)
    brand_id = Column(Integer, ForeignKey("brands.id"), index=True)
    product_type = Column(String(120), nullable=False, default="")
    gender = Column(String(20), nullable=False, default="unisex")
    material = Column(String(80), nullable=False, default="")
    tags = Column(String(500), nullable=False, default="")
    image_url = Column(String(500), nullable=False, default="")
    published = Column(Boolean, nullable=False, default=True)
    created_at = Column(DateTime, nullable=False, default=_now)

    category = relationship("Category", back_populates="products")
    brand = relationship("Brand", back_populates="products")
    variants = relationship(
        "Variant", back_populates="product", cascade="all, delete-orphan", order_by="Variant.id"
    )
    reviews = relationship("Review", back_populates="product", cascade="all, delete-orphan")


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="variant_price_not_negative"),
        CheckConstraint("stock >= 0", name="variant_stock_not_negative"),
        UniqueConstraint("product_id", "color", "size", name="variant_options_unique"),
    )
    id = Column(Integer, primary_key=True)
    product_id = Column(Integer, ForeignKey("products.id", ondelete="CASCADE"), nullable=False, index=True)
    sku = Column(String(120), nullable=True, unique=True)
    color = Column(String(60), nullable=False, default="")
    size = Column(String(30), nullable=False, default="")
    price_cents = Column(Integer, nullable=False)
    compare_at_price_cents = Column(Integer, nullable=True)
    stock = Column(Integer, nullable=False, default=0)
    grams = Column(Integer, nullable=False, default=0)

    product = relationship("Product", back_populates="variants")

    @property
    def label(self) -> str:
        return " / ".join(part for part in (self.color, self.size) if part) or "Default"


class Customer(Base):
    __tablename__ = "customers"
    id = Column(Integer, primary_key=True)
    email = Column(String(255), nullable=False, unique=True)
    first_name = Column(String(80), nullable=False, default="")
    last_name = Column(String(80), nullable=False, default="")
    phone = Column(String(40), nullable=False, default="")
    address_line = Column(String(255), nullable=False, default="")
    city = Column(String(120), nullable=False, default="")
    postcode = Column(String(20), nullable=False, default="")
    country = Column(String(2), nullable=False, default="US")
    # e.g. {"size": "M", "liked_colors": ["blue"], "disliked_colors": ["yellow"]}
    preferences = Column(JSON, nullable=False, default=dict)
    created_at = Column(DateTime, nullable=False, default=_now)

    orders = relationship("Order", back_populates="customer")


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (CheckConstraint("rating BETWEEN 1 AND 5", name="review_rating_range"),)
    id = Column(Integer, primary_key=True)
    product_id = Column(Integer, ForeignKey("products.id", ondelete="CASCADE"), nullable=False, index=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=True)
    author_name = Column(String(120), nullable=False, default="")
    rating = Column(Integer, nullable=False)
    title = Column(String(200), nullable=False, default="")
    body = Column(Text, nullable=False, default="")
    created_at = Column(DateTime, nullable=False, default=_now)

    product = relationship("Product", back_populates="reviews")


class Cart(Base):
    __tablename__ = "carts"
    id = Column(Integer, primary_key=True)
    session_id = Column(String(255), nullable=False, index=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=True, index=True)
    status = Column(String(20), nullable=False, default="open")  # open, checked_out, abandoned
    created_at = Column(DateTime, nullable=False, default=_now)
    updated_at = Column(DateTime, nullable=False, default=_now, onupdate=_now)

    items = relationship("CartItem", back_populates="cart", cascade="all, delete-orphan", order_by="CartItem.id")


class CartItem(Base):
    __tablename__ = "cart_items"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="cart_item_quantity_positive"),
        UniqueConstraint("cart_id", "variant_id", name="cart_item_variant_unique"),
    )
    id = Column(Integer, primary_key=True)
    cart_id = Column(Integer, ForeignKey("carts.id", ondelete="CASCADE"), nullable=False, index=True)
    variant_id = Column(Integer, ForeignKey("variants.id"), nullable=False)
    quantity = Column(Integer, nullable=False)
    unit_price_cents = Column(Integer, nullable=False)

    cart = relationship("Cart", back_populates="items")
    variant = relationship("Variant")


class DiscountCode(Base):
    __tablename__ = "discount_codes"
    id = Column(Integer, primary_key=True)
    code = Column(String(60), nullable=False, unique=True)
    description = Column(String(255), nullable=False, default="")
    kind = Column(String(20), nullable=False)  # percent, fixed, free_shipping
    value = Column(Integer, nullable=False, default=0)  # percent points or cents
    min_spend_cents = Column(Integer, nullable=False, default=0)
    category_id = Column(Integer, ForeignKey("categories.id"), nullable=True)
    starts_at = Column(DateTime, nullable=True)
    ends_at = Column(DateTime, nullable=True)
    usage_limit = Column(Integer, nullable=True)
    times_used = Column(Integer, nullable=False, default=0)
    once_per_customer = Column(Boolean, nullable=False, default=True)
    public = Column(Boolean, nullable=False, default=False)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=True)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ORDER_STATUSES) + ")", name="order_status_known"
        ),
    )
    id = Column(Integer, primary_key=True)
    number = Column(String(20), nullable=False, unique=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=True, index=True)
    email = Column(String(255), nullable=False)
    status = Column(String(20), nullable=False, default="pending_payment", index=True)
    shipping_name = Column(String(160), nullable=False, default="")
    shipping_address = Column(String(255), nullable=False, default="")
    shipping_city = Column(String(120), nullable=False, default="")
    shipping_postcode = Column(String(20), nullable=False, default="")
    shipping_country = Column(String(2), nullable=False, default="US")
    shipping_method = Column(String(40), nullable=False, default="standard")
    carrier = Column(String(40), nullable=True)
    tracking_number = Column(String(60), nullable=True)
    estimated_delivery = Column(Date, nullable=True)
    delivered_at = Column(DateTime, nullable=True)
    subtotal_cents = Column(Integer, nullable=False, default=0)
    discount_cents = Column(Integer, nullable=False, default=0)
    shipping_cents = Column(Integer, nullable=False, default=0)
    tax_cents = Column(Integer, nullable=False, default=0)
    total_cents = Column(Integer, nullable=False, default=0)
    discount_code_id = Column(Integer, ForeignKey("discount_codes.id"), nullable=True)
    source = Column(String(20), nullable=False, default="web")  # web, chat
    conversation_id = Column(String(255), nullable=True, index=True)  # "did my payment go through?" looks up by chat
    placed_at = Column(DateTime, nullable=False, default=_now, index=True)
    updated_at = Column(DateTime, nullable=False, default=_now, onupdate=_now)

    customer = relationship("Customer", back_populates="orders")
    items = relationship("OrderItem", back_populates="order", cascade="all, delete-orphan", order_by="OrderItem.id")
    returns = relationship("Return", back_populates="order", cascade="all, delete-orphan")
    refunds = relationship("Refund", back_populates="order", cascade="all, delete-orphan")


class OrderItem(Base):
    __tablename__ = "order_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="order_item_quantity_positive"),)
    id = Column(Integer, primary_key=True)
    order_id = Column(Integer, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True)
    variant_id = Column(Integer, ForeignKey("variants.id"), nullable=True, index=True)
    product_title = Column(String(255), nullable=False)
    variant_label = Column(String(120), nullable=False, default="")
    quantity = Column(Integer, nullable=False)
    unit_price_cents = Column(Integer, nullable=False)

    order = relationship("Order", back_populates="items")
    variant = relationship("Variant")


class Return(Base):
    __tablename__ = "returns"
    id = Column(Integer, primary_key=True)
    rma_number = Column(String(20), nullable=False, unique=True)
    order_id = Column(Integer, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True)
    status = Column(String(20), nullable=False, default="requested")  # requested, received, refunded, rejected
    reason = Column(String(255), nullable=False, default="")
    resolution = Column(String(20), nullable=False, default="refund")  # refund, exchange, store_credit
    created_at = Column(DateTime, nullable=False, default=_now)

    order = relationship("Order", back_populates="returns")
    items = relationship("ReturnItem", back_populates="return_", cascade="all, delete-orphan")


class ReturnItem(Base):
    __tablename__ = "return_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="return_item_quantity_positive"),)
    id = Column(Integer, primary_key=True)
    return_id = Column(Integer, ForeignKey("returns.id", ondelete="CASCADE"), nullable=False, index=True)
    order_item_id = Column(Integer, ForeignKey("order_items.id"), nullable=False)
    quantity = Column(Integer, nullable=False)

    return_ = relationship("Return", back_populates="items")
    order_item = relationship("OrderItem")


class Refund(Base):
    __tablename__ = "refunds"
    id = Column(Integer, primary_key=True)
    order_id = Column(Integer, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True)
    return_id = Column(Integer, ForeignKey("returns.id"), nullable=True)
    amount_cents = Column(Integer, nullable=False)
    status = Column(String(20), nullable=False, default="pending")  # pending, completed
    method = Column(String(30), nullable=False, default="original_payment")
    created_at = Column(DateTime, nullable=False, default=_now)
    completed_at = Column(DateTime, nullable=True)

    order = relationship("Order", back_populates="refunds")


class Lead(Base):
    """A bulk or team enquiry, one per conversation, scored by shop.leads (BANT) and queued for the CRM."""

    __tablename__ = "leads"
    id = Column(Integer, primary_key=True)
    # Unique: a repeated submission in the same chat updates this row instead of adding a second lead.
    conversation_id = Column(String(255), nullable=True, unique=True, index=True)
    source = Column(String(40), nullable=False, default="chat", server_default="chat")  # where it came from
    name = Column(String(160), nullable=False, default="")
    email = Column(String(255), nullable=False, default="")
    company = Column(String(160), nullable=False, default="")
    role = Column(String(120), nullable=False, default="")
    quantity = Column(Integer, nullable=True)
    budget_cents = Column(Integer, nullable=True)
    timeline = Column(String(120), nullable=False, default="")
    need = Column(Text, nullable=False, default="")
    score = Column(Integer, nullable=False, default=0)
    stage = Column(String(10), nullable=False, default="cold")  # cold, warm, hot
    reasons = Column(JSON, nullable=False, default=list, server_default="[]")  # one plain-words reason per BANT factor
    consent = Column(Boolean, nullable=False, default=False)
    consent_text = Column(String(500), nullable=False, default="", server_default="")  # the wording agreed to
    consented_at = Column(DateTime, nullable=True)
    callback_phone = Column(String(40), nullable=False, default="", server_default="")
    callback_requested_at = Column(DateTime, nullable=True)
    created_at = Column(DateTime, nullable=False, default=_now)
    updated_at = Column(DateTime, nullable=True)
    # The CRM outbox (shop.leads.deliver_due_leads): pending -> delivered, or failed after the last retry.
    crm_status = Column(String(20), nullable=False, default="pending", server_default="pending", index=True)
    crm_version = Column(Integer, nullable=False, default=1, server_default="1")  # bumped on every change
    crm_attempts = Column(Integer, nullable=False, default=0, server_default="0")
    crm_next_attempt_at = Column(DateTime, nullable=True)
    crm_last_error = Column(String(500), nullable=False, default="", server_default="")
    crm_delivered_at = Column(DateTime, nullable=True)


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="feedback_rating_range"),)
    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=True, index=True)
    rating = Column(Integer, nullable=True)
    comment = Column(Text, nullable=False, default="")
    topic = Column(String(60), nullable=False, default="")
    is_complaint = Column(Boolean, nullable=False, default=False)
    created_at = Column(DateTime, nullable=False, default=_now)


class HandoffTicket(Base):
    __tablename__ = "handoff_tickets"
    id = Column(Integer, primary_key=True)
    number = Column(String(20), nullable=False, unique=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    reason = Column(String(60), nullable=False)
    status = Column(String(20), nullable=False, default="waiting")  # waiting, active, resolved, ticket
    agent = Column(String(120), nullable=True)
    contact = Column(String(255), nullable=False, default="")
    summary = Column(Text, nullable=False, default="")
    created_at = Column(DateTime, nullable=False, default=_now)
    updated_at = Column(DateTime, nullable=False, default=_now, onupdate=_now)
