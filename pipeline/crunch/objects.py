"""The API collector's CPU stage: everything derived from one object's two payloads.

Runs in pool processes, which import this module: it imports only the standard library and
`pipeline.crunch.fingerprint`, never the I/O stack.
"""

from __future__ import annotations

import itertools
import os
import statistics
import string
from collections import Counter
from typing import Any

from pipeline.crunch.fingerprint import fingerprint

JsonObject = dict[str, Any]
# Two reviews sharing at least this share of their word pairs (Jaccard) are one text posted
# twice, give or take an edit; unrelated reviews on the same subject share a few percent.
COPY_SIMILARITY = 0.8
# The score is a Bayesian average: few ratings pull it towards the prior, so one five-star
# review does not outrank a hundred four-star ones.
PRIOR_RATING = 3.0
PRIOR_WEIGHT = 5
_STRIP = string.punctuation + "\u201c\u201d\u2018\u2019\u2026\u2013\u2014"


def crunch_object(obj: JsonObject, details: JsonObject) -> JsonObject:
    """Everything derived from one object's two payloads; runs in a pool process.

    Simhash and top words of the description and of the reviews; review spam found by comparing
    every review's word pairs with every other's; rating statistics and a score over the reviews
    that are not copies; total stock. A few milliseconds of pure Python per object, which on the
    event loop would stall every other job of the worker. Malformed fields of a foreign API are
    skipped and counted, never fatal. `pid` records which process did the work.
    """
    reviews, invalid = _reviews(details.get("reviews"))
    copies = _copies([_shingles(text) for _, text in reviews])
    kept = [review for index, review in enumerate(reviews) if index not in copies]
    ratings = [rating for rating, _ in kept]
    description = obj.get("description")
    return {
        "description": fingerprint(description if isinstance(description, str) else ""),
        "review_words": fingerprint(" ".join(text for _, text in kept))["top_words"],
        "reviews": len(reviews),
        "copied_reviews": len(copies),
        "invalid_reviews": invalid,
        "rating": rating_stats(ratings),
        "score": score(ratings),
        "stock": _stock(details.get("stock")),
        "pid": os.getpid(),
    }


def _reviews(raw: Any) -> tuple[list[tuple[float, str]], int]:
    """Well-formed reviews as (rating 1-5, text), and how many were not."""
    if not isinstance(raw, list):
        return [], 0
    reviews: list[tuple[float, str]] = []
    for review in raw:
        rating = review.get("rating") if isinstance(review, dict) else None
        text = review.get("text") if isinstance(review, dict) else None
        if isinstance(rating, int | float) and not isinstance(rating, bool) and 1 <= rating <= 5:
            reviews.append((float(rating), text if isinstance(text, str) else ""))
    return reviews, len(raw) - len(reviews)


def _shingles(text: str) -> frozenset[str]:
    """The text's word pairs (its words, if it has fewer than two): word order counts."""
    words = [w for w in (t.strip(_STRIP) for t in text.lower().split()) if w]
    if len(words) < 2:
        return frozenset(words)
    return frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity; empty texts (rating-only reviews) resemble nothing."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _copies(shingles: list[frozenset[str]]) -> set[int]:
    """Indices of reviews that repeat an earlier one (the first of each text is kept)."""
    return {
        index
        for index, current in enumerate(shingles)
        if any(similarity(current, shingles[earlier]) >= COPY_SIMILARITY for earlier in range(index))
    }


def rating_stats(ratings: list[float]) -> JsonObject:
    """Count, mean, standard deviation and histogram (keys "1" to "5": MongoDB keys are strings)."""
    histogram = Counter(str(round(r)) for r in ratings)
    return {
        "count": len(ratings),
        "mean": round(statistics.fmean(ratings), 3) if ratings else None,
        "stdev": round(statistics.pstdev(ratings), 3) if ratings else None,
        "histogram": {str(star): histogram[str(star)] for star in range(1, 6)},
    }


def score(ratings: list[float]) -> float:
    """The ratings' Bayesian average (see `PRIOR_RATING`): 3.0 with no ratings at all."""
    return round((PRIOR_RATING * PRIOR_WEIGHT + sum(ratings)) / (PRIOR_WEIGHT + len(ratings)), 3)


def _stock(raw: Any) -> int:
    if not isinstance(raw, dict):
        return 0
    return sum(v for v in raw.values() if isinstance(v, int) and not isinstance(v, bool) and v > 0)
