"""Import a Shopify product CSV export into the shop's catalog.

Shopify spreads one product over several rows that share a Handle: the first row carries the
product (Title, Body (HTML), Vendor, Type, Tags, option names) and its first variant; the rows
after it carry more variants (Option values, Variant Price, ...) or just more images.

The whole file is read and checked before anything is written. Each product is then written in
its own savepoint: a broken row skips the product it belongs to (which stays exactly as it was
in the database) and is reported with its line number; the other products import. Importing
the same file again updates products (by handle) and variants (by colour and size) in place.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Dict, List, Optional, Tuple, Union

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from shop.db import session_scope
from shop.models import Brand, Category, Product, Variant
from shop.seed import CATEGORIES, PRODUCT_TYPES

REQUIRED_COLUMNS = ("Handle", "Title", "Variant Price")
COLOR_OPTION_NAMES = {"color", "colour"}
SIZE_OPTION_NAMES = {"size"}
GENDER_WORDS = {"men": "men", "mens": "men", "male": "men", "women": "women", "womens": "women",
                "female": "women", "unisex": "unisex", "kids": "kids", "children": "kids"}
FALSE_WORDS = {"false", "no", "0", "n", "draft", "archived"}

Source = Union[str, "os.PathLike[str]", IO[str], IO[bytes]]


class ShopifyImportError(Exception):
    """The file cannot be imported at all (missing, not a CSV, wrong columns): nothing was written."""


@dataclass(frozen=True)
class SkippedRow:
    line: int  # physical line in the file where the row starts
    handle: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}"
        return f"{where}: {self.reason}" if not self.handle else f"{where} ({self.handle}): {self.reason}"


@dataclass
class ImportReport:
    source: str
    rows_read: int = 0
    products_created: int = 0
    products_updated: int = 0
    variants_created: int = 0
    variants_updated: int = 0
    skipped_rows: List[SkippedRow] = field(default_factory=list)
    skipped_products: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @property
    def products_imported(self) -> int:
        return self.products_created + self.products_updated

    @property
    def variants_imported(self) -> int:
        return self.variants_created + self.variants_updated

    def summary(self) -> str:
        lines = [
            f"Imported {self.source}: {self.rows_read} rows read",
            f"  products: {self.products_created} created, {self.products_updated} updated",
            f"  variants: {self.variants_created} created, {self.variants_updated} updated",
            f"  rows skipped: {len(self.skipped_rows)}",
        ]
        lines += [f"    {row}" for row in self.skipped_rows]
        if self.skipped_products:
            lines.append(f"  products not imported: {len(self.skipped_products)} ({', '.join(self.skipped_products)})")
        if self.warnings:
            lines.append(f"  warnings: {len(self.warnings)}")
            lines += [f"    {w}" for w in self.warnings]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# HTML to text
# --------------------------------------------------------------------------------------------

class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "blockquote",
              "h1", "h2", "h3", "h4", "h5", "h6", "hr"}
    SKIPPED = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: List[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")

    def handle_startendtag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """'<p>Soft <b>cotton</b> &amp; linen</p><ul><li>Slim</li></ul>' -> 'Soft cotton & linen\\n- Slim'."""
    if not html or not html.strip():
        return ""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line and line != "-")


# --------------------------------------------------------------------------------------------
# Reading and checking the file
# --------------------------------------------------------------------------------------------

@dataclass
class _VariantDraft:
    line: int
    color: str
    size: str
    price_cents: int
    compare_at_price_cents: Optional[int]
    stock: int
    sku: Optional[str]
    grams: int


@dataclass
class _ProductDraft:
    handle: str
    line: int
    head: Dict[str, str]
    option_names: List[str]
    rows: int = 1
    variants: List[_VariantDraft] = field(default_factory=list)
    image: str = ""
    problems: List[SkippedRow] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


def _open_text(source: Source) -> Tuple[IO[str], str, str]:
    """(text stream, display name, what to do when done: "close", "detach" or "")."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ShopifyImportError(f"{path}: no such file")
        if path.is_dir():
            raise ShopifyImportError(f"{path}: is a directory, not a CSV file")
        try:
            return open(path, newline="", encoding="utf-8-sig"), str(path), "close"
        except OSError as exc:
            raise ShopifyImportError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    name = str(getattr(source, "name", "<stream>"))
    binary = isinstance(source, (io.BufferedIOBase, io.RawIOBase)) or (
        not isinstance(source, io.TextIOBase) and "b" in str(getattr(source, "mode", ""))
    )
    if binary:
        return io.TextIOWrapper(source, encoding="utf-8-sig", newline=""), name, "detach"  # type: ignore[arg-type]
    return source, name, ""  # type: ignore[return-value]


def _read_rows(stream: IO[str], name: str) -> Tuple[List[str], List[Tuple[int, List[str]]]]:
    """The header and every data row with the physical line it starts on."""
    reader = csv.reader(stream)
    rows: List[Tuple[int, List[str]]] = []
    header: Optional[List[str]] = None
    previous_end = 0
    try:
        for row in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip().lstrip("\ufeff") for cell in row]
                continue
            rows.append((start, row))
    except UnicodeDecodeError as exc:
        raise ShopifyImportError(f"{name}: not a text CSV file (it is not UTF-8: {exc.reason})") from exc
    except csv.Error as exc:
        raise ShopifyImportError(f"{name}: not a readable CSV file (line {reader.line_num}: {exc})") from exc
    if header is None:
        raise ShopifyImportError(f"{name}: the file is empty")
    missing = [col for col in REQUIRED_COLUMNS if col not in header]
    if missing:
        raise ShopifyImportError(
            f"{name}: not a Shopify product CSV export: missing required column(s) {', '.join(missing)} "
            f"in the header on line 1"
        )
    return header, rows


def _money_cents(value: str, column: str, required: bool = False) -> Optional[int]:
    text = value.strip().lstrip("$€£").strip()
    if not text:
        if required:
            raise ValueError(f"{column} is empty")
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{column} {value.strip()!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"{column} {value.strip()!r} is not a number")
    if amount < 0:
        raise ValueError(f"{column} {value.strip()!r} is negative")
    if amount >= 10_000_000:
        raise ValueError(f"{column} {value.strip()!r} is too large")
    return int((amount * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def _whole_number(value: str, column: str) -> int:
    text = value.strip()
    if not text:
        return 0
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{column} {text!r} is not a number") from None
    if not number.is_finite() or abs(number) >= 2**31:
        raise ValueError(f"{column} {text!r} is not a usable number")
    return int(number.to_integral_value(rounding=ROUND_HALF_UP))


def _normal_handle(raw: str) -> str:
    handle = re.sub(r"[^a-z0-9]+", "-", raw.strip().lower()).strip("-")
    return handle[:200]


def _variant_from_row(draft: _ProductDraft, line: int, row: Dict[str, str]) -> _VariantDraft:
    """A variant from one row, or ValueError with a shopper-readable reason."""
    color = size = ""
    others: List[Tuple[str, str]] = []
    for index in range(3):
        value = row.get(f"Option{index + 1} Value", "").strip()
        name = row.get(f"Option{index + 1} Name", "").strip() or draft.option_names[index]
        if not value or value == "Default Title" or name.lower() == "title":
            continue
        if name.lower() in COLOR_OPTION_NAMES:
            color = value
        elif name.lower() in SIZE_OPTION_NAMES:
            size = value
        else:
            others.append((name or f"Option{index + 1}", value))
    for name, value in others:
        if not size:
            size = value
            slot = "size"
        elif not color:
            color = value
            slot = "colour"
        else:
            size = f"{size} / {value}"
            slot = "size"
        message = f"{draft.handle}: option {name!r} has no column of its own; kept as {slot}"
        if message not in draft.warnings:
            draft.warnings.append(message)
    if len(color) > 60 or len(size) > 30:
        raise ValueError("an option value is too long (colour: 60, size: 30 characters at most)")
    price = _money_cents(row.get("Variant Price", ""), "Variant Price", required=True)
    compare_at = _money_cents(row.get("Variant Compare At Price", ""), "Variant Compare At Price")
    stock = _whole_number(row.get("Variant Inventory Qty", ""), "Variant Inventory Qty")
    if stock < 0:
        draft.warnings.append(f"line {line} ({draft.handle}): Variant Inventory Qty {stock} read as 0 (oversold)")
        stock = 0
    grams = max(0, _whole_number(row.get("Variant Grams", ""), "Variant Grams"))
    sku = row.get("Variant SKU", "").strip()[:120] or None
    return _VariantDraft(line, color, size, price, compare_at or None, stock, sku, grams)


def _is_image_only(row: Dict[str, str]) -> bool:
    keys = ("Option1 Value", "Option2 Value", "Option3 Value", "Variant SKU", "Variant Price")
    return not any(row.get(k, "").strip() for k in keys)


def parse_shopify_csv(source: Source) -> Tuple[str, int, List[_ProductDraft], List[SkippedRow]]:
    """(display name, data rows read, product drafts in file order, rows that belong to no product)."""
    stream, name, done = _open_text(source)
    try:
        header, rows = _read_rows(stream, name)
    finally:
        if done == "close":
            stream.close()
        elif done == "detach":
            stream.detach()  # type: ignore[attr-defined]  # leave the caller's binary stream open
    width = len(header)
    drafts: Dict[str, _ProductDraft] = {}
    orphans: List[SkippedRow] = []
    orphan_lines: Dict[str, int] = {}
    for line, cells in rows:
        raw_handle = cells[0].strip() if cells else ""
        handle = _normal_handle(raw_handle)
        if len(cells) != width:
            problem = SkippedRow(line, handle, f"has {len(cells)} columns, the header has {width}")
            if handle in drafts:
                drafts[handle].problems.append(problem)
                drafts[handle].rows += 1
            else:
                orphans.append(problem)
                orphan_lines.setdefault(handle, line)
            continue
        row = dict(zip(header, cells))
        if not handle:
            orphans.append(SkippedRow(line, "", "has no Handle"))
            continue
        draft = drafts.get(handle)
        if draft is None:
            if not row.get("Title", "").strip():
                orphans.append(SkippedRow(
                    line, handle, f"continuation row for handle {handle!r}, but no row with its Title came before it"
                ))
                orphan_lines.setdefault(handle, line)
                continue
            draft = drafts[handle] = _ProductDraft(
                handle, line, row, [row.get(f"Option{i} Name", "").strip() for i in (1, 2, 3)]
            )
            if handle != raw_handle:
                draft.warnings.append(f"line {line}: handle {raw_handle!r} stored as {handle!r}")
            if handle in orphan_lines:
                draft.problems.append(SkippedRow(
                    line, handle, f"an earlier row for this product (line {orphan_lines[handle]}) could not be read"
                ))
        else:
            draft.rows += 1
            if _is_image_only(row):
                draft.image = draft.image or row.get("Image Src", "").strip()
                continue
        try:
            variant = _variant_from_row(draft, line, row)
        except ValueError as exc:
            draft.problems.append(SkippedRow(line, handle, str(exc)))
            continue
        for other in draft.variants:
            if (other.color.lower(), other.size.lower()) == (variant.color.lower(), variant.size.lower()):
                label = " / ".join(p for p in (variant.color, variant.size) if p) or "no options"
                draft.problems.append(SkippedRow(line, handle, f"repeats the options of line {other.line} ({label})"))
                break
        else:
            draft.variants.append(variant)
    return name, len(rows), list(drafts.values()), orphans


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def _classify(head: Dict[str, str]) -> Tuple[str, str]:
    """(category name, product type) from Type, or from the first tag when Type is empty.

    A type the shop knows ("Sneakers", "Jeans") lands in its category ("Shoes", "Apparel");
    an unknown one becomes a category of its own.
    """
    product_type = head.get("Type", "").strip()
    if not product_type:
        tags = [t.strip() for t in head.get("Tags", "").split(",") if t.strip()]
        product_type = tags[0] if tags else ""
    if not product_type:
        return "", ""
    wanted = product_type.lower().rstrip("s")
    for name in CATEGORIES:
        if name.lower().rstrip("s") == wanted:
            return name, product_type
    for known in PRODUCT_TYPES:
        if known.name.lower().rstrip("s") == wanted:
            return known.category, product_type
    return product_type[:1].upper() + product_type[1:80], product_type[:120]


def _gender(head: Dict[str, str]) -> Optional[str]:
    google = head.get("Google Shopping / Gender", "").strip().lower()
    if google in GENDER_WORDS:
        return GENDER_WORDS[google]
    for tag in head.get("Tags", "").split(","):
        if tag.strip().lower() in GENDER_WORDS:
            return GENDER_WORDS[tag.strip().lower()]
    return None


def _published(head: Dict[str, str]) -> bool:
    published = head.get("Published", "").strip().lower() not in FALSE_WORDS
    status = head.get("Status", "").strip().lower()
    return published and status in ("", "active")


def _category(session: Session, name: str) -> Optional[Category]:
    if not name:
        return None
    slug = _normal_handle(name)[:80] or "category"
    found = session.execute(
        select(Category).where(or_(func.lower(Category.name) == name.lower(), Category.slug == slug))
    ).scalars().first()
    if found is None:
        found = Category(name=name[:80], slug=slug)
        session.add(found)
    return found


def _brand(session: Session, name: str) -> Optional[Brand]:
    if not name:
        return None
    found = session.execute(select(Brand).where(func.lower(Brand.name) == name.lower())).scalars().first()
    if found is None:
        found = Brand(name=name[:120])
        session.add(found)
    return found


def _write_product(session: Session, draft: _ProductDraft, report: ImportReport) -> None:
    head = draft.head
    skus = [v.sku for v in draft.variants if v.sku]
    if skus:
        taken = session.execute(
            select(Variant.sku, Product.handle).join(Product, Product.id == Variant.product_id)
            .where(Variant.sku.in_(skus), Product.handle != draft.handle)
        ).first()
        if taken:
            raise _ProductRejected(f"SKU {taken[0]!r} already belongs to product {taken[1]!r}")
    product = session.execute(
        select(Product).where(Product.handle == draft.handle).options(selectinload(Product.variants))
    ).scalar_one_or_none()
    created = product is None
    if created:
        product = Product(handle=draft.handle)
        session.add(product)
    product.title = head["Title"].strip()[:255] or draft.handle
    if "Body (HTML)" in head:
        product.description = html_to_text(head["Body (HTML)"])
    category_name, product_type = _classify(head)
    if category_name or created:
        product.category = _category(session, category_name)
        product.product_type = product_type
    if "Vendor" in head:
        product.brand = _brand(session, head["Vendor"].strip())
    gender = _gender(head)
    if gender or created:
        product.gender = gender or "unisex"
    if "Tags" in head:
        product.tags = ", ".join(t.strip() for t in head["Tags"].split(",") if t.strip())[:500]
    image = head.get("Image Src", "").strip() or draft.image
    if image or created:
        product.image_url = image[:500] or f"/images/products/{draft.handle}.svg"
    product.published = _published(head)

    existing = {(v.color.lower(), v.size.lower()): v for v in product.variants}
    variants_created = variants_updated = 0
    for data in draft.variants:
        variant = existing.get((data.color.lower(), data.size.lower()))
        if variant is None:
            variant = Variant(color=data.color, size=data.size)
            product.variants.append(variant)
            variants_created += 1
        else:
            variants_updated += 1
        variant.price_cents = data.price_cents
        variant.compare_at_price_cents = data.compare_at_price_cents
        variant.stock = data.stock
        variant.grams = data.grams
        variant.sku = data.sku
    session.flush()
    if created:
        report.products_created += 1
    else:
        report.products_updated += 1
    report.variants_created += variants_created
    report.variants_updated += variants_updated


class _ProductRejected(Exception):
    pass


def import_shopify_csv(target: Union[Session, Engine], source: Source) -> ImportReport:
    """Import a Shopify product CSV into the catalog and say what happened.

    `target` is a Session (the caller commits) or an Engine (committed here). Raises
    ShopifyImportError, before writing anything, when the file cannot be read as a Shopify export.
    """
    name, rows_read, drafts, orphans = parse_shopify_csv(source)
    report = ImportReport(source=name, rows_read=rows_read)
    report.skipped_rows.extend(orphans)
    if isinstance(target, Engine):
        with session_scope(target) as session:
            _write_all(session, drafts, report)
    else:
        _write_all(target, drafts, report)
    report.skipped_rows.sort(key=lambda r: r.line)
    return report


def _write_all(session: Session, drafts: List[_ProductDraft], report: ImportReport) -> None:
    for draft in drafts:
        report.warnings.extend(draft.warnings)
        if draft.problems:
            report.skipped_rows.extend(draft.problems)
            report.skipped_products.append(draft.handle)
            continue
        if not draft.variants:
            report.skipped_rows.append(SkippedRow(draft.line, draft.handle, "product has no variant with a price"))
            report.skipped_products.append(draft.handle)
            continue
        try:
            with session.begin_nested():
                _write_product(session, draft, report)
        except _ProductRejected as exc:
            report.skipped_rows.append(SkippedRow(draft.line, draft.handle, f"product not imported: {exc}"))
            report.skipped_products.append(draft.handle)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
            report.skipped_rows.append(SkippedRow(draft.line, draft.handle, f"the database refused it: {reason}"))
            report.skipped_products.append(draft.handle)
