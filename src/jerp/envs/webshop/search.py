"""BM25 search that reproduces the original WebShop engine (pyserini/Lucene) in pure Python.

Why not plain `bm25s`: Lucene stores each document length in one lossy byte
(`SmallFloat.intToByte4`), and the original rankings depend on that rounding; without it
only about 1 in 10 reference queries keeps its exact top-50 order. So the analyzer
(StandardTokenizer, English possessive, lowercase, stop words, Porter) and the scorer
(k1=0.9, b=0.4, quantised lengths, float32 like Lucene) are written out here.

The Porter step is NLTK's `PorterStemmer(mode=MARTIN_EXTENSIONS)`: Lucene's PorterStemmer
is Martin Porter's reference implementation, which departs from his 1980 paper (e.g. `bli`
-> `ble`, `logi` -> `log`). Measured against the 300 Lucene analyzer references
(`reference/analyzer_reference.jsonl`), with the rest of the analyzer unchanged:
NLTK MARTIN_EXTENSIONS 300/300 queries; NLTK ORIGINAL_ALGORITHM and PyStemmer 3.1.0's
`porter` (Snowball's, the paper's) 295/300, NLTK's default NLTK_EXTENSIONS 285/300. On the
14,992 distinct words of the 1,000 documents, MARTIN_EXTENSIONS gave the same stems as
the hand-written port of Lucene's stemmer it replaced on all of them (PyStemmer: 31
differ), and on 155,410 words of the goals plus random strings too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import regex

if TYPE_CHECKING:
    from nltk.stem.porter import PorterStemmer

K1 = 0.9
B = 0.4
TOP_K = 50
MAX_TOKEN_LENGTH = 255

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (33 words).
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)

# UAX#29 word segmentation (the `regex` WORD flag) gives StandardTokenizer's boundaries; a
# segment becomes a token when it holds a letter/digit, or is an emoji (Lucene's <EMOJI>).
_BOUNDARY = regex.compile(r"\b", flags=regex.WORD | regex.V1)
_WORDLIKE = regex.compile(
    r"[\p{WB=ALetter}\p{WB=Hebrew_Letter}\p{WB=Numeric}\p{WB=Katakana}"
    r"\p{Ideographic}\p{Script=Hiragana}]"
)
# Unicode's Extended_Pictographic ranges (emoji-data.txt, stable since Unicode 11); Lucene
# emits such a character as an <EMOJI> token. The `regex` module's own table is narrower (it
# misses e.g. U+2605 BLACK STAR, which Lucene counts), so the ranges are spelt out.
_EXT_PICT_RANGES = """
00A9 00AE 203C 2049 2122 2139 2194-2199 21A9-21AA 231A-231B 2328 2388 23CF 23E9-23F3
23F8-23FA 24C2 25AA-25AB 25B6 25C0 25FB-25FE 2600-2605 2607-2612 2614-2685 2690-2705
2708-2712 2714 2716 271D 2721 2728 2733-2734 2744 2747 274C 274E 2753-2755 2757 2763-2767
2795-2797 27A1 27B0 27BF 2934-2935 2B05-2B07 2B1B-2B1C 2B50 2B55 3030 303D 3297 3299
1F000-1F0FF 1F10D-1F10F 1F12F 1F16C-1F171 1F17E-1F17F 1F18E 1F191-1F19A 1F1AD-1F1E5
1F201-1F20F 1F21A 1F22F 1F232-1F23A 1F23C-1F23F 1F249-1F3FA 1F400-1F53D 1F546-1F64F
1F680-1F6FF 1F774-1F77F 1F7D5-1F7FF 1F80C-1F80F 1F848-1F84F 1F85A-1F85F 1F888-1F88F
1F8AE-1F8FF 1F90C-1F93A 1F93C-1F945 1F947-1FAFF 1FC00-1FFFD
"""


def _ranges_class(spec: str) -> str:
    parts = []
    for item in spec.split():
        lo, _, hi = item.partition("-")
        parts.append(regex.escape(chr(int(lo, 16))))
        if hi:
            parts.append("-" + regex.escape(chr(int(hi, 16))))
    return "[" + "".join(parts) + "]"


_EMOJI = regex.compile("^" + _ranges_class(_EXT_PICT_RANGES))
_APOSTROPHES = ("'", "\u2019", "\uff07")


def tokenize(text: str) -> list[str]:
    """StandardTokenizer: UAX#29 word segments that carry a word or an emoji."""
    out: list[str] = []
    for seg in _BOUNDARY.split(text):
        if not seg or seg.isspace():
            continue
        if _WORDLIKE.search(seg) or _EMOJI.match(seg):
            if len(seg) > MAX_TOKEN_LENGTH:
                out.extend(seg[i : i + MAX_TOKEN_LENGTH] for i in range(0, len(seg), 255))
            else:
                out.append(seg)
    return out


# ---------------------------------------------------------------- Porter stemmer (Lucene's)


@lru_cache(maxsize=1)
def _porter() -> PorterStemmer:
    # Imported on first use: `nltk`'s package init loads scipy and scikit-learn (+5.0 s
    # measured on this shared, busy 2-core machine in a process that had already imported
    # jerp.jobs), which ALFWorld runs have no use for.
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer(mode=PorterStemmer.MARTIN_EXTENSIONS)


@lru_cache(maxsize=200_000)
def porter_stem(word: str) -> str:
    """Lucene's PorterStemmer: Porter's own reference version (NLTK's MARTIN_EXTENSIONS
    mode), not the 1980 paper's (NLTK's ORIGINAL_ALGORITHM, Snowball's `porter`), which
    keeps e.g. `assembli`, `technologi`; words of 1-2 characters stay as they are."""
    return _porter().stem(word, to_lowercase=False)


def analyze(text: str) -> list[str]:
    """Anserini's DefaultEnglishAnalyzer, for documents and queries alike."""
    out = []
    for tok in tokenize(text):
        if len(tok) >= 2 and tok[-1] in "sS" and tok[-2] in _APOSTROPHES:
            tok = tok[:-2]
        tok = tok.lower()
        if not tok or tok in STOP_WORDS:
            continue
        out.append(porter_stem(tok))
    return out


# ---------------------------------------------------------------- Lucene length norm


def _long_to_int4(i: int) -> int:
    num_bits = i.bit_length()
    if num_bits < 4:
        return i
    shift = num_bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits = i & 0x07
    shift = (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_NUM_FREE_VALUES = 255 - _long_to_int4(2**31 - 1)


def quantize_length(n: int) -> int:
    """Document length as Lucene sees it: `byte4ToInt(intToByte4(n))`."""
    if n < _NUM_FREE_VALUES:
        return n
    code = _NUM_FREE_VALUES + _long_to_int4(n - _NUM_FREE_VALUES)
    return _NUM_FREE_VALUES + _int4_to_long(code - _NUM_FREE_VALUES)


# ---------------------------------------------------------------- index and search


@dataclass
class BM25Index:
    """Inverted index over analysed documents, with per-document Lucene norms."""

    ids: list[str]
    vocab: dict[str, int]
    post_docs: list[np.ndarray]
    post_tfs: list[np.ndarray]
    norm_inverse: np.ndarray  # float32, 1 / (k1 * (1 - b + b * dl / avgdl)) per document
    id_rank: np.ndarray  # position of each id in ascending id order, for tie breaks

    @classmethod
    def build(cls, docs: Iterable[tuple[str, str]], k1: float = K1, b: float = B) -> BM25Index:
        ids: list[str] = []
        vocab: dict[str, int] = {}
        rows: list[list[int]] = []
        tfs: list[list[int]] = []
        lengths: list[int] = []
        for d, (doc_id, text) in enumerate(docs):
            ids.append(doc_id)
            counts = Counter(analyze(text))
            lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                t = vocab.setdefault(term, len(vocab))
                if t == len(rows):
                    rows.append([])
                    tfs.append([])
                rows[t].append(d)
                tfs[t].append(tf)
        n = len(ids)
        avgdl = np.float32(sum(lengths) / n) if n else np.float32(1.0)
        qlen = np.array([quantize_length(x) for x in lengths], dtype=np.float32)
        k1_, b_ = np.float32(k1), np.float32(b)
        norm_inverse = np.float32(1.0) / (k1_ * ((np.float32(1) - b_) + b_ * qlen / avgdl))
        order = np.argsort(np.array(ids, dtype=object), kind="stable")
        id_rank = np.empty(n, dtype=np.int64)
        id_rank[order] = np.arange(n)
        return cls(
            ids=ids,
            vocab=vocab,
            post_docs=[np.asarray(r, dtype=np.int64) for r in rows],
            post_tfs=[np.asarray(t, dtype=np.float32) for t in tfs],
            norm_inverse=norm_inverse.astype(np.float32),
            id_rank=id_rank,
        )

    def search(self, query: str, k: int = TOP_K) -> list[tuple[str, float]]:
        """Top-k (id, score): bag-of-words query, each distinct term boosted by its count."""
        scores = np.zeros(len(self.ids), dtype=np.float64)
        hit = np.zeros(len(self.ids), dtype=bool)
        n = np.float64(len(self.ids))
        for term, boost in Counter(analyze(query)).items():
            t = self.vocab.get(term)
            if t is None:
                continue
            docs, tf = self.post_docs[t], self.post_tfs[t]
            df = len(docs)
            idf = np.float32(math.log(1.0 + (n - df + 0.5) / (df + 0.5)))
            weight = np.float32(boost) * idf
            contrib = weight - weight / (np.float32(1) + tf * self.norm_inverse[docs])
            scores[docs] += contrib.astype(np.float64)
            hit[docs] = True
        cand = np.flatnonzero(hit)
        if cand.size == 0:
            return []
        s32 = scores[cand].astype(np.float32)
        order = np.lexsort((self.id_rank[cand], -s32))[:k]
        return [(self.ids[cand[i]], float(s32[i])) for i in order]
