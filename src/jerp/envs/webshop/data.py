"""Product catalogue loading for the 1,000-product WebShop setting (or the full catalogue).

Two layouts are accepted so that users with the official files can point at them:
* this project's shared folder: `products_1000.json` (records already processed by the
  upstream loader) + `items_ins_v2_1000.json`;
* the official raw files: `items_shuffle_1000.json` / `items_shuffle.json` (or the
  reconstructed copy) + `items_ins_v2_1000.json` / `items_ins_v2.json`, processed here with
  the upstream loading rules.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]
DATA_ENV_VAR = "JERP_WEBSHOP_DATA"

PROCESSED_NAMES = ("products_1000.json",)
RAW_NAMES = (
    "items_shuffle_1000.json",
    "items_shuffle.json",
    "items_shuffle_1000.reconstructed.json",
)
INS_NAMES = ("items_ins_v2_1000.json", "items_ins_v2.json")
DOCS_NAME = "search_documents_1000.jsonl"


@dataclass(frozen=True)
class Product:
    """One product as the environment sees it (upstream processed record, trimmed)."""

    asin: str
    title: str
    description: str
    bullet_points: tuple[str, ...]
    price_tag: str  # what pages show: "$12.99" or "$10.0 to $20.0"
    pricing: tuple[float, ...]  # one value, or (lo, hi) for a range
    options: dict[str, list[str]]  # name -> values, source order
    attributes: tuple[str, ...]
    category: str
    query: str
    product_category: str
    instruction: str | None = None
    instruction_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalogue:
    """All products in file order, with an ASIN lookup."""

    products: tuple[Product, ...]
    by_asin: dict[str, Product]
    data_dir: Path


def resolve_data_dir(
    data_dir: str | os.PathLike | None = None,
    project: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Explicit argument (relative to `project` if given), else $JERP_WEBSHOP_DATA (from
    `environ`, default the process's), else ../shared/webshop beside the project (default:
    this repository)."""
    base = Path(project).expanduser().resolve() if project is not None else REPO_ROOT
    env = os.environ if environ is None else environ
    tried: list[Path] = []
    for cand in (data_dir, env.get(DATA_ENV_VAR), base.parent / "shared" / "webshop"):
        if cand is None or cand == "":
            continue
        path = (base / Path(cand).expanduser()).resolve()
        tried.append(path)
        if _find(path, PROCESSED_NAMES + RAW_NAMES) and _find(path, INS_NAMES):
            return path
        if data_dir is not None:
            break  # an explicit directory must work; do not silently fall back
    looked = ", ".join(str(p) for p in tried) or "(nothing)"
    raise FileNotFoundError(
        "WebShop data not found. Looked in: "
        f"{looked}. Expected {PROCESSED_NAMES[0]} or one of {RAW_NAMES[:2]}, plus one of "
        f"{INS_NAMES}. Pass data_dir=... or set ${DATA_ENV_VAR}."
    )


def _find(path: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (path / name).is_file():
            return path / name
    return None


def parse_price(pricing: object) -> tuple[tuple[float, ...], str]:
    """Upstream price rule: split on '$', keep digits and dots; one value or a (lo, hi) range."""
    if isinstance(pricing, list):  # already parsed (processed records)
        values = [float(v) for v in pricing]
    elif not pricing:
        values = []
    else:
        pieces = str(pricing).split("$")[1:]
        values = [float(Decimal(re.sub(r"[^\d.]", "", p))) for p in pieces]
    if not values:
        return (100.0,), "$100.0"
    if len(values) == 1:
        return (values[0],), f"${values[0]}"
    lo, hi = values[0], values[1]
    return (lo, hi), f"${lo} to ${hi}"


def parse_options(custom: object) -> dict[str, list[str]]:
    """Lowercased option names -> values (stripped, '/' -> ' | ', lowercased); nulls skipped."""
    options: dict[str, list[str]] = {}
    if not isinstance(custom, dict):
        return options
    for name, entries in custom.items():
        if entries is None:
            continue
        values = [str(e["value"]).strip().replace("/", " | ").lower() for e in entries]
        options[name.lower()] = values
    return options


def _product_from_raw(raw: dict, ins: dict) -> Product:
    pricing, tag = parse_price(raw.get("pricing"))
    bullets = raw.get("small_description") or []
    if isinstance(bullets, str):
        bullets = [bullets]
    entry = ins.get(raw["asin"], {})
    return Product(
        asin=raw["asin"],
        title=raw["name"],
        description=raw.get("full_description") or "",
        bullet_points=tuple(bullets),
        price_tag=tag,
        pricing=pricing,
        options=parse_options(raw.get("customization_options")),
        attributes=tuple(entry.get("attributes", ["DUMMY_ATTR"])),
        category=raw.get("category", ""),
        query=str(raw.get("query", "")).lower().strip(),
        product_category=raw.get("product_category", ""),
        instruction=entry.get("instruction"),
        instruction_attributes=tuple(entry.get("instruction_attributes") or ()),
    )


def _product_from_processed(rec: dict, ins: dict) -> Product:
    pricing, _ = parse_price(rec.get("pricing"))
    entry = ins.get(rec["asin"], {})
    return Product(
        asin=rec["asin"],
        title=rec["Title"],
        description=rec.get("Description") or "",
        bullet_points=tuple(rec.get("BulletPoints") or ()),
        price_tag=rec["Price"],
        pricing=pricing,
        options={k: list(v) for k, v in rec.get("options", {}).items()},
        attributes=tuple(rec.get("Attributes", ["DUMMY_ATTR"])),
        category=rec.get("category", ""),
        query=rec.get("query", ""),
        product_category=rec.get("product_category", ""),
        instruction=entry.get("instruction"),
        instruction_attributes=tuple(entry.get("instruction_attributes") or ()),
    )


def load_raw_products(raw_items: list[dict], ins: dict) -> list[Product]:
    """Apply the upstream loader rules: skip bad/duplicate ASINs, derive the fields."""
    seen: set[str] = set()
    out: list[Product] = []
    for raw in raw_items:
        asin = raw.get("asin")
        if not asin or asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        out.append(_product_from_raw(raw, ins))
    return out


@lru_cache(maxsize=4)
def load_catalogue(data_dir: Path) -> Catalogue:
    """Load (once per directory) the products of `data_dir`, processed or raw layout."""
    ins_path = _find(data_dir, INS_NAMES)
    assert ins_path is not None
    ins = json.loads(ins_path.read_text())
    processed = _find(data_dir, PROCESSED_NAMES)
    if processed is not None:
        products = [_product_from_processed(r, ins) for r in json.loads(processed.read_text())]
    else:
        raw_path = _find(data_dir, RAW_NAMES)
        assert raw_path is not None
        products = load_raw_products(json.loads(raw_path.read_text()), ins)
    return Catalogue(tuple(products), {p.asin: p for p in products}, data_dir)


def search_text(product: Product) -> str:
    """The text the original Lucene index holds: title, description, first bullet, options."""
    option_text = ", and ".join(f"{k}: {', '.join(v)}" for k, v in product.options.items())
    first_bullet = product.bullet_points[0] if product.bullet_points else ""
    return " ".join([product.title, product.description, first_bullet, option_text]).lower()
