"""Importing Shopify product CSV exports: the real sample, re-imports, and broken files."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, List

import pytest
from sqlalchemy import func, select

from shop.catalog import SearchFilters, get_product, search_products
from shop.db import session_scope
from shop.models import Product, Variant
from shop.shopify_import import ShopifyImportError, html_to_text, import_shopify_csv

# Counted by reading shopify-apparel.csv: 22 data rows; 20 handles; classic-varsity-top has three
# sizes (Small, Medium, Large), every other product one "Default Title" variant.
SAMPLE_ROWS = 22
SAMPLE_PRODUCTS = 20
SAMPLE_VARIANTS = 22

HEADER = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Type", "Tags", "Published",
    "Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value", "Option3 Name", "Option3 Value",
    "Variant SKU", "Variant Grams", "Variant Inventory Qty", "Variant Price", "Variant Compare At Price",
    "Image Src",
]


def write_csv(path: Path, rows: List[Dict[str, str]], header: List[str] = HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.get(column, "") for column in header])
    return path


def counts(engine):
    with session_scope(engine) as session:
        return (session.execute(select(func.count()).select_from(Product)).scalar_one(),
                session.execute(select(func.count()).select_from(Variant)).scalar_one())


def variants_of(engine, handle):
    with session_scope(engine) as session:
        product = get_product(session, handle)
        if product is None:
            return None
        return [(v.color, v.size, v.price_cents, v.compare_at_price_cents, v.stock, v.sku) for v in product.variants]


# --------------------------------------------------------------------------------------------
# The real sample export
# --------------------------------------------------------------------------------------------

def test_the_sample_export_imports_every_product_and_variant(engine, shopify_sample):
    report = import_shopify_csv(engine, shopify_sample)
    assert report.rows_read == SAMPLE_ROWS
    assert (report.products_created, report.products_updated) == (SAMPLE_PRODUCTS, 0)
    assert (report.variants_created, report.variants_updated) == (SAMPLE_VARIANTS, 0)
    assert report.skipped_rows == [] and report.skipped_products == []
    assert counts(engine) == (SAMPLE_PRODUCTS, SAMPLE_VARIANTS)


def test_sample_products_carry_options_prices_and_text(engine, shopify_sample):
    import_shopify_csv(engine, shopify_sample)
    assert variants_of(engine, "classic-varsity-top") == [
        ("", "Small", 6000, None, 1, None), ("", "Medium", 6000, None, 1, None), ("", "Large", 6000, None, 1, None),
    ]
    assert variants_of(engine, "ocean-blue-shirt") == [("", "", 5000, None, 1, None)]
    assert variants_of(engine, "led-high-tops") == [("", "", 8000, None, 1, None)]
    with session_scope(engine) as session:
        shirt = get_product(session, "ocean-blue-shirt")
        assert shirt.title == "Ocean Blue Shirt"
        assert shirt.brand.name == "partners-demo"
        assert shirt.gender == "men" and shirt.category.name == "Men"
        assert shirt.published is True
        assert shirt.description.startswith("Ocean blue cotton shirt with a narrow collar")
        assert shirt.description.endswith("tiled kalidoscope patterns.")
        assert shirt.image_url == "https://burst.shopifycdn.com/photos/young-man-in-bright-fashion_925x.jpg"
        assert get_product(session, "classic-varsity-top").gender == "women"
        jackets = search_products(session, SearchFilters(text="jackets", limit=50))
    assert {p.handle for p in jackets.products} == {
        "classic-leather-jacket", "navy-sport-jacket", "dark-winter-jacket", "zipped-jacket", "olive-green-jacket",
    }


def test_reimporting_the_same_file_updates_instead_of_duplicating(engine, shopify_sample):
    import_shopify_csv(engine, shopify_sample)
    again = import_shopify_csv(engine, shopify_sample)
    assert (again.products_created, again.products_updated) == (0, SAMPLE_PRODUCTS)
    assert (again.variants_created, again.variants_updated) == (0, SAMPLE_VARIANTS)
    assert counts(engine) == (SAMPLE_PRODUCTS, SAMPLE_VARIANTS)


def test_reimporting_a_changed_export_changes_prices_and_adds_sizes(engine, shopify_sample, tmp_path):
    import_shopify_csv(engine, shopify_sample)
    with open(shopify_sample, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    price, value = header.index("Variant Price"), header.index("Option1 Value")
    for row in rows:
        if row[0] == "classic-varsity-top" and row[value] == "Medium":
            row[price] = "65.50"
            extra = list(row)
    extra[value], extra[price] = "X-Large", "62"
    rows.append(extra)
    changed = tmp_path / "changed.csv"
    with open(changed, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)

    report = import_shopify_csv(engine, changed)
    assert (report.products_created, report.products_updated) == (0, SAMPLE_PRODUCTS)
    assert (report.variants_created, report.variants_updated) == (1, SAMPLE_VARIANTS)
    assert counts(engine) == (SAMPLE_PRODUCTS, SAMPLE_VARIANTS + 1)
    assert [(s, p) for _, s, p, *_ in variants_of(engine, "classic-varsity-top")] == [
        ("Small", 6000), ("Medium", 6550), ("Large", 6000), ("X-Large", 6200),
    ]


def test_a_file_object_imports_like_a_path(engine, shopify_sample):
    text = shopify_sample.read_text(encoding="utf-8")
    report = import_shopify_csv(engine, io.StringIO(text))
    assert report.products_created == SAMPLE_PRODUCTS
    binary = io.BytesIO(text.encode("utf-8"))
    report = import_shopify_csv(engine, binary)
    assert report.products_updated == SAMPLE_PRODUCTS
    assert not binary.closed


# --------------------------------------------------------------------------------------------
# Options, HTML, categories
# --------------------------------------------------------------------------------------------

HTML_BODY = (
    "<p>Soft <strong>organic</strong> cotton &amp; linen.</p>\n<ul>\n<li>Slim fit</li>\n"
    "<li>Machine wash</li>\n</ul><script>alert('x')</script>"
)


def test_colour_and_size_options_html_and_type(engine, tmp_path):
    path = write_csv(tmp_path / "options.csv", [
        {"Handle": "organic-tee", "Title": "Organic Tee", "Body (HTML)": HTML_BODY, "Vendor": "Loomwell",
         "Type": "T-Shirt", "Tags": "summer, basics", "Published": "TRUE",
         "Option1 Name": "Colour", "Option1 Value": "Red", "Option2 Name": "Size", "Option2 Value": "M",
         "Variant SKU": "OT-RED-M", "Variant Grams": "180.0", "Variant Inventory Qty": "7",
         "Variant Price": "24.99", "Variant Compare At Price": "29.99", "Image Src": "https://cdn.example.com/t.jpg"},
        {"Handle": "organic-tee", "Option1 Value": "Red", "Option2 Value": "L", "Variant SKU": "OT-RED-L",
         "Variant Inventory Qty": "0", "Variant Price": "24.99"},
        {"Handle": "organic-tee", "Image Src": "https://cdn.example.com/t-back.jpg"},  # an image-only row
        {"Handle": "trail-sneakers", "Title": "Trail Sneakers", "Vendor": "Kestrel", "Type": "Sneakers",
         "Published": "false", "Option1 Name": "Color", "Option1 Value": "Navy", "Option2 Name": "Material",
         "Option2 Value": "Suede", "Variant Price": "$89", "Variant Inventory Qty": "-2"},
    ])
    report = import_shopify_csv(engine, path)
    assert report.skipped_rows == []
    assert (report.products_created, report.variants_created) == (2, 3)
    assert variants_of(engine, "organic-tee") == [
        ("Red", "M", 2499, 2999, 7, "OT-RED-M"), ("Red", "L", 2499, None, 0, "OT-RED-L"),
    ]
    assert variants_of(engine, "trail-sneakers") == [("Navy", "Suede", 8900, None, 0, None)]
    assert any("Material" in w for w in report.warnings)
    assert any("oversold" in w for w in report.warnings)
    with session_scope(engine) as session:
        tee = get_product(session, "organic-tee")
        assert tee.description == "Soft organic cotton & linen.\n- Slim fit\n- Machine wash"
        assert tee.category.name == "Apparel" and tee.product_type == "T-Shirt"
        assert tee.tags == "summer, basics" and tee.variants[0].grams == 180
        sneakers = get_product(session, "trail-sneakers")
        assert sneakers.category.name == "Shoes" and sneakers.published is False


@pytest.mark.parametrize("html, text", [
    ("", ""),
    ("plain text", "plain text"),
    ("<p>One</p><p>Two&nbsp;&gt; three</p>", "One\nTwo\xa0> three".replace("\xa0", " ")),
    ("<div>Line<br>break</div>", "Line\nbreak"),
    ("<style>p{color:red}</style><b>Bold</b>", "Bold"),
])
def test_html_to_text(html, text):
    assert html_to_text(html) == text


# --------------------------------------------------------------------------------------------
# Broken files
# --------------------------------------------------------------------------------------------

def beanie_rows(head_price="19.99", second_price="19.99"):
    return [
        {"Handle": "wool-beanie", "Title": "Wool Beanie", "Vendor": "Kindred Knit", "Type": "Beanie",
         "Option1 Name": "Color", "Option1 Value": "Grey", "Variant Price": head_price, "Variant SKU": "WB-GREY"},
        {"Handle": "wool-beanie", "Option1 Value": "Navy", "Variant Price": second_price, "Variant SKU": "WB-NAVY"},
    ]


def write_broken_file(path: Path) -> Path:
    """Physical lines: 1 header; 2-4 linen-shirt (3-line HTML body); 5 linen-shirt M; 6 wool-beanie;
    7 wool-beanie with a bad price; 8 orphan continuation; 9 too few columns; 10 its continuation;
    11-12 denim-jacket."""
    good = write_csv(path, [
        {"Handle": "linen-shirt", "Title": "Linen Shirt", "Body (HTML)": "<p>Breathable linen.</p>\n<ul>\n<li>Relaxed fit</li></ul>",
         "Vendor": "Loomwell", "Type": "Shirt", "Option1 Name": "Color", "Option1 Value": "Blue",
         "Option2 Name": "Size", "Option2 Value": "S", "Variant Price": "45.00"},
        {"Handle": "linen-shirt", "Option1 Value": "Blue", "Option2 Value": "M", "Variant Price": "45.00"},
        *beanie_rows(head_price="21.00", second_price="nineteen"),
        {"Handle": "ghost-socks", "Option1 Value": "White", "Variant Price": "9.00"},
    ])
    lines = good.read_text(encoding="utf-8").splitlines()
    lines.append("canvas-tote,Canvas Tote,,Hollow Oak,Tote Bag,,true,Color,Beige")
    lines.append("canvas-tote" + ",," * 6 + "Black" + "," * (len(HEADER) - 15) + "25.00,,")
    assert len(lines[-1].split(",")) == len(HEADER)
    tail = write_csv(path.with_name("tail.csv"), [
        {"Handle": "denim-jacket", "Title": "Denim Jacket", "Type": "Jacket", "Option1 Name": "Size",
         "Option1 Value": "M", "Variant Price": "89.50", "Variant Compare At Price": "120"},
        {"Handle": "denim-jacket", "Option1 Value": "L", "Variant Price": "89.50"},
    ]).read_text(encoding="utf-8").splitlines()[1:]
    path.write_text("\n".join(lines + tail) + "\n", encoding="utf-8")
    return path


def test_broken_rows_are_reported_by_line_and_only_their_product_is_skipped(engine, tmp_path):
    report = import_shopify_csv(engine, write_broken_file(tmp_path / "broken.csv"))
    assert report.rows_read == 9
    assert (report.products_created, report.variants_created) == (2, 4)
    assert report.skipped_products == ["wool-beanie"]
    by_line = {row.line: row for row in report.skipped_rows}
    assert sorted(by_line) == [7, 8, 9, 10]
    assert "Variant Price 'nineteen' is not a number" in by_line[7].reason
    assert by_line[7].handle == "wool-beanie"
    assert "ghost-socks" in by_line[8].reason and "no row with its Title" in by_line[8].reason
    assert "columns" in by_line[9].reason
    assert "line 7" in report.summary() and "nineteen" in report.summary()
    assert variants_of(engine, "wool-beanie") is None
    assert variants_of(engine, "ghost-socks") is None
    assert variants_of(engine, "canvas-tote") is None
    assert [(s, p, c) for _, s, p, c, *_ in variants_of(engine, "denim-jacket")] == [("M", 8950, 12000), ("L", 8950, None)]
    assert len(variants_of(engine, "linen-shirt")) == 2
    with session_scope(engine) as session:
        assert get_product(session, "linen-shirt").description == "Breathable linen.\n- Relaxed fit"


def test_a_broken_reimport_leaves_the_existing_product_exactly_as_it_was(engine, tmp_path):
    import_shopify_csv(engine, write_csv(tmp_path / "good.csv", beanie_rows()))
    before = variants_of(engine, "wool-beanie")
    assert [p for _, _, p, *_ in before] == [1999, 1999]
    import_shopify_csv(engine, write_broken_file(tmp_path / "broken.csv"))  # head row says 21.00 now
    assert variants_of(engine, "wool-beanie") == before


def test_a_sku_owned_by_another_product_skips_only_that_product(engine, tmp_path):
    path = write_csv(tmp_path / "skus.csv", [
        {"Handle": "first-cap", "Title": "First Cap", "Variant Price": "20", "Variant SKU": "CAP-1"},
        {"Handle": "second-cap", "Title": "Second Cap", "Variant Price": "22", "Variant SKU": "CAP-1"},
        {"Handle": "third-cap", "Title": "Third Cap", "Variant Price": "24", "Variant SKU": "CAP-3"},
    ])
    report = import_shopify_csv(engine, path)
    assert report.skipped_products == ["second-cap"]
    assert "CAP-1" in report.skipped_rows[0].reason and report.skipped_rows[0].line == 3
    assert counts(engine) == (2, 2)


def test_repeated_options_within_a_product_are_a_broken_row(engine, tmp_path):
    path = write_csv(tmp_path / "twice.csv", [
        {"Handle": "cap", "Title": "Cap", "Option1 Name": "Color", "Option1 Value": "Red", "Variant Price": "20"},
        {"Handle": "cap", "Option1 Value": "red", "Variant Price": "21"},
    ])
    report = import_shopify_csv(engine, path)
    assert [(r.line, "line 2" in r.reason) for r in report.skipped_rows] == [(3, True)]
    assert counts(engine) == (0, 0)


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "empty"),
    (b"Handle,Title,Vendor\nshirt,Shirt,Acme\n", "missing required column(s) Variant Price"),
    (b'{"products": [{"handle": "shirt"}]}\n', "missing required column(s) Handle, Title, Variant Price"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "not a text CSV file"),
    (b"Handle,Title,Variant Price\nshirt,Shirt,\x00\x00\n", "not a readable CSV file (line 2"),
    ("Handle,Title,Variant Price\ncafé,Café,5\n".encode("latin-1"), "not UTF-8"),
])
def test_an_unreadable_file_is_refused_with_a_clear_message_and_nothing_is_written(engine, tmp_path, content, message):
    path = tmp_path / "export.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ShopifyImportError) as raised:
        import_shopify_csv(engine, path)
    assert message in str(raised.value)
    assert "export.csv" in str(raised.value)
    assert counts(engine) == (0, 0)


def test_a_directory_is_refused(engine, tmp_path):
    with pytest.raises(ShopifyImportError, match="directory"):
        import_shopify_csv(engine, tmp_path)


def test_a_product_the_database_refuses_is_rolled_back_alone(engine, tmp_path):
    """Two variants of one product share a SKU: only the database notices, inside the product's savepoint."""
    import_shopify_csv(engine, write_csv(tmp_path / "good.csv", beanie_rows()))
    before = variants_of(engine, "wool-beanie")
    path = write_csv(tmp_path / "clash.csv", [
        {"Handle": "first-cap", "Title": "First Cap", "Variant Price": "20", "Variant SKU": "CAP-1"},
        {"Handle": "wool-beanie", "Title": "Wool Beanie", "Option1 Name": "Color", "Option1 Value": "Grey",
         "Variant Price": "30", "Variant SKU": "WB-SAME"},
        {"Handle": "wool-beanie", "Option1 Value": "Red", "Variant Price": "30", "Variant SKU": "WB-SAME"},
        {"Handle": "last-cap", "Title": "Last Cap", "Variant Price": "24", "Variant SKU": "CAP-3"},
    ])
    report = import_shopify_csv(engine, path)
    assert report.skipped_products == ["wool-beanie"]
    assert report.skipped_rows[0].line == 3 and "refused" in report.skipped_rows[0].reason
    assert (report.products_created, report.products_updated) == (2, 0)
    assert variants_of(engine, "wool-beanie") == before
    assert variants_of(engine, "first-cap") and variants_of(engine, "last-cap")
    assert counts(engine) == (3, 4)
