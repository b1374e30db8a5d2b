"""Words with their character offsets, and BIO tags from labeled character spans."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Letters and digits of any script (with inner hyphens/apostrophes), or one symbol: this keeps
# offsets and works for English, German, Spanish, Portuguese, Italian, Danish and Romanian.
WORD = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str


def tokenize(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def bio_tags(words: list[tuple[str, int, int]], spans: list[Span]) -> list[str]:
    """A word inside a span gets B-/I- of its label (the first word B-); others O.
    Overlapping spans: the longer one wins."""
    tags = ["O"] * len(words)
    for span in sorted(spans, key=lambda s: s.end - s.start):
        inside = [i for i, (_, start, end) in enumerate(words) if start < span.end and end > span.start]
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + span.label
    return tags


def spans_from_bio(words: list[tuple[str, int, int]], tags: list[str]) -> list[Span]:
    """CoNLL chunking: a chunk starts at B- or at an I- whose type differs from the previous tag."""
    spans, current = [], None
    for (_, start, end), tag in zip(words, tags):
        kind, _, label = tag.partition("-")
        if kind == "I" and current and current[2] == label:
            current[1] = end
            continue
        if current:
            spans.append(Span(*current))
        current = [start, end, label] if kind in ("B", "I") else None
    if current:
        spans.append(Span(*current))
    return spans
