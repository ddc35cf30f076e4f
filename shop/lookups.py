"""Rasa NLU lookup tables generated from the catalog in the database (`python -m shop lookups`).

Three files in Rasa 3.x training-data format, one lookup table each, named like the entities of
domain.yml: `category.yml` (category names and product types, singular and plural, lower case),
`brand.yml` (brand names as the catalog spells them, plus their lower-case form) and `color.yml`
(the distinct variant colours, lower case). Entries are sorted and the files carry no date, so
the same catalog always gives byte-identical files. They are never edited by hand.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shop.db import REPO_ROOT
from shop.models import Brand, Category, Product, Variant
from shop.search_text import number_forms

DEFAULT_OUT_DIR = REPO_ROOT / "data" / "nlu" / "lookups"
COMMAND = "python -m shop lookups"
MAX_ENTRY_LENGTH = 80
LOOKUPS = ("category", "brand", "color")


def _clean(value: Optional[str]) -> str:
    """One line, no leading list marker, no YAML-significant surprises; '' when unusable."""
    text = "".join(c if c.isprintable() else " " for c in str(value or ""))
    text = " ".join(text.split())[:MAX_ENTRY_LENGTH].strip()
    while text.startswith(("-", "#", "|", ">", "*")):
        text = text[1:].strip()
    return text


def _sorted_unique(values: Iterable[str]) -> List[str]:
    cleaned = {v for v in (_clean(v) for v in values) if v}
    return sorted(cleaned, key=lambda v: (v.casefold(), v))


def lookup_values(session: Session) -> Dict[str, List[str]]:
    """The entries of each lookup table, read from the catalog (published products only)."""
    published = Product.published.is_(True)
    category_names = session.execute(
        select(Category.name).join(Product, Product.category_id == Category.id).where(published).distinct()
    ).scalars().all()
    product_types = session.execute(select(Product.product_type).where(published).distinct()).scalars().all()
    brands = session.execute(
        select(Brand.name).join(Product, Product.brand_id == Brand.id).where(published).distinct()
    ).scalars().all()
    colors = session.execute(
        select(func.lower(func.trim(Variant.color)))
        .join(Product, Product.id == Variant.product_id)
        .where(published, func.trim(Variant.color) != "")
        .distinct()
    ).scalars().all()
    categories = [form for name in list(category_names) + list(product_types) for form in number_forms(_clean(name))]
    return {
        "category": _sorted_unique(categories),
        "brand": _sorted_unique([name for b in brands for name in (b, _clean(b).lower())]),
        "color": _sorted_unique(c.lower() for c in colors if c),
    }


def render_lookup(name: str, values: List[str]) -> str:
    """A Rasa 3.x NLU training-data file holding one lookup table."""
    lines = [
        f"# Generated from the shop catalog by `{COMMAND}`: do not edit by hand.",
        f"# Lookup table '{name}': {len(values)} entries. Run the command again after the catalog changes.",
        'version: "3.1"',
    ]
    if not values:  # Rasa warns about a lookup table without examples: an empty file instead
        return "\n".join(lines + ["nlu: []"]) + "\n"
    lines += ["nlu:", f"- lookup: {name}", "  examples: |"]
    lines.extend(f"    - {value}" for value in values)
    return "\n".join(lines) + "\n"


def _write_atomically(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.write(content)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600 files; these are ordinary data files
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_lookup_tables(session: Session, out_dir: Path = DEFAULT_OUT_DIR) -> Dict[str, int]:
    """Write category.yml, brand.yml and color.yml into out_dir. Returns the number of entries per table."""
    values = lookup_values(session)
    out_dir = Path(out_dir)
    for name in LOOKUPS:
        _write_atomically(out_dir / f"{name}.yml", render_lookup(name, values[name]))
    return {name: len(values[name]) for name in LOOKUPS}
