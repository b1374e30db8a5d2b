"""The Visual NER bench's FUNSD scoring (bench/visual_ner.py), as the field scores FUNSD: entities
are the data set's own word groups in the annotators' order, matched exactly with their label;
with Tesseract's words, an entity is the set of Tesseract words its FUNSD words cover, and one
that no Tesseract word reaches stays a miss."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from visual_ner import given_page, score_pages, tesseract_gold  # noqa: E402

from trainers.ocr import Word  # noqa: E402

SIZE = (1000, 1000)  # pixels = the 0..1000 scale, to keep the boxes readable
FORM = [
    {"id": 0, "label": "header", "box": [400, 20, 600, 50], "words": [{"text": "FORM", "box": [400, 20, 600, 50]}]},
    {
        "id": 1,
        "label": "question",
        "box": [100, 100, 260, 120],
        "words": [{"text": "Your", "box": [100, 100, 170, 120]}, {"text": "name:", "box": [180, 100, 260, 120]}],
    },
    {"id": 2, "label": "other", "box": [800, 900, 900, 920], "words": [{"text": "p.1", "box": [800, 900, 900, 920]}]},
    {
        "id": 3,
        "label": "answer",
        "box": [300, 100, 520, 150],
        "words": [
            {"text": "John", "box": [300, 100, 380, 120]},
            {"text": " ", "box": [390, 100, 395, 120]},  # blank: dropped, as the field drops it
            {"text": "Smith", "box": [300, 130, 380, 150]},
        ],
    },
    {
        "id": 4,
        "label": "answer",
        "box": [100, 600, 200, 620],
        "words": [{"text": "faint", "box": [100, 600, 200, 620]}],
    },
]


def test_the_field_gold_is_the_annotators_word_groups_and_other_is_unlabelled():
    words, gold = given_page(FORM, SIZE)
    assert [w.text for w in words] == ["FORM", "Your", "name:", "p.1", "John", "Smith", "faint"]
    assert gold == [
        (frozenset({0}), "header"),
        (frozenset({1, 2}), "question"),
        (frozenset({4, 5}), "answer"),
        (frozenset({6}), "answer"),
    ]


def test_entities_match_exactly_and_chunk_as_seqeval_does():
    words, gold = given_page(FORM, SIZE)
    tags = ["B-header", "B-question", "I-question", "O", "I-answer", "I-answer", "B-question"]
    scores = score_pages([words], [tags], [gold])
    s = scores["all"]
    # an I after O starts an entity (John Smith is found); "faint" has the wrong label
    assert s["per_label"]["header"]["f1"] == 1.0 and s["per_label"]["question"]["precision"] == 0.5
    assert s["per_label"]["answer"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert s["micro"]["support"] == 4 and scores["unreachable"] == 0 and "reachable" not in scores
    split = ["B-header", "B-question", "B-question", "O", "B-answer", "I-answer", "B-answer"]
    assert score_pages([words], [split], [gold])["all"]["per_label"]["question"]["f1"] == 0.0


def test_tesseract_words_take_the_entity_their_box_falls_in_and_unreached_entities_stay_misses():
    tesseract = [
        Word("FORM", (405, 22, 598, 49)),
        Word("Yourname:", (100, 100, 260, 120)),  # two FUNSD words read as one
        Word("John", (300, 100, 380, 120)),
        Word("Smith", (300, 130, 380, 150)),
        Word("p.1", (800, 900, 900, 920)),  # 'other': no labelled entity
        Word("smudge", (600, 300, 700, 320)),  # no entity
    ]  # nothing where "faint" is
    gold = tesseract_gold(FORM, SIZE, tesseract)
    assert gold == [
        (frozenset({0}), "header"),
        (frozenset({1}), "question"),
        (frozenset({2, 3}), "answer"),
        (("unreachable", 4), "answer"),
    ]
    tags = ["B-header", "B-question", "B-answer", "I-answer", "O", "O"]
    scores = score_pages([tesseract], [tags], [gold])
    assert scores["unreachable"] == 1
    assert scores["all"]["micro"]["recall"] == 0.75 and scores["reachable"]["micro"]["f1"] == 1.0
