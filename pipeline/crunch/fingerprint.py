"""The CPU stage's work: text fingerprints, computed in pool processes, never on the event loop.

`fingerprint` is a pure function of the page text: a 64-bit simhash (near-duplicate pages have
hashes a few bits apart) and the most frequent words. It runs in the worker's `CpuPool`
(`pipeline.cpupool`).
"""

from __future__ import annotations

import string
from collections import Counter
from typing import Any

try:
    # CPython's own BLAKE2 (what hashlib.blake2b is): importing hashlib would also load OpenSSL
    # into every pool process, for hashes this module never uses.
    from _blake2 import blake2b
except ImportError:  # another Python implementation
    from hashlib import blake2b

_PUNCTUATION = string.punctuation + "\u00ab\u00bb\u201c\u201d\u2018\u2019\u2026\u2013\u2014"
_STOPWORDS = frozenset(
    """
    the and for are but not you all any can had her was one our out has him his how its may new now old see
    two way who did get let put say she too use that with have this will your from they been were what when
    which their there would about into than them then these some could other more only also over such most
    very just like des les une est pas que qui dans pour sur der die das und ist nicht mit
    """.split()
)
TOP_WORDS = 10


# Bit-sliced counters: `_SPREAD[byte]` holds the byte's 8 bits in 8 lanes of `_LANE` bits, so
# one integer multiply-add counts a weight into all 8 bit positions at once. Exact while a
# text's total weight (its word count) stays below 2**_LANE.
_LANE = 32
_LANE_MASK = (1 << _LANE) - 1
_SPREAD = [sum(((byte >> bit) & 1) << (_LANE * bit) for bit in range(8)) for byte in range(256)]


def simhash(weights: Counter[str]) -> int:
    """64-bit simhash of weighted features.

    Bit `8 * i + b` is set when the features whose hash has that bit outweigh those without it.
    The weights are first summed per value of each hash byte (8 table updates per feature
    instead of 64 bit tests), then each table is folded into 8 bit counters at once through
    `_SPREAD`: cheap enough to run on every page, even one with thousands of distinct words.
    """
    tables: list[dict[int, int]] = [{} for _ in range(8)]
    for feature, weight in weights.items():
        digest = blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        for table, byte in zip(tables, digest, strict=True):
            table[byte] = table.get(byte, 0) + weight
    total = sum(weights.values())
    result = 0
    for byte_index, table in enumerate(tables):
        counters = sum(weight * _SPREAD[byte] for byte, weight in table.items())
        for bit in range(8):
            if 2 * ((counters >> (_LANE * bit)) & _LANE_MASK) > total:
                result |= 1 << (byte_index * 8 + bit)
    return result


def word_counts(tokens: Counter[str]) -> Counter[str]:
    """Words of two letters or more among lower-cased whitespace `tokens`, stop words left out.

    Counting whitespace tokens first and cleaning only the distinct ones is several times
    faster than a Unicode-aware regex over the whole text.
    """
    words: Counter[str] = Counter()
    for token, count in tokens.items():
        word = token.strip(_PUNCTUATION)
        if len(word) >= 2 and word.isalpha() and word not in _STOPWORDS:
            words[word] += count
    return words


def fingerprint(text: str) -> dict[str, Any]:
    """Word count, simhash (16 hex digits: MongoDB has no unsigned 64-bit integer) and top words."""
    tokens = Counter(text.lower().split())
    words = word_counts(tokens)
    return {
        "word_count": tokens.total(),
        "simhash": f"{simhash(words):016x}",
        "top_words": [[word, count] for word, count in words.most_common(TOP_WORDS)],
    }
