"""Visual NER: entities on document images. Each task is a page; its words come from the task or
from Tesseract (`trainers.ocr`), each word takes the label of the labelled region that covers
most of it (at least half), and the words in their source's order get BIO tags.

The model is LayoutLM's recipe initialised from the packaged MiniLM: a
`LayoutLMForTokenClassification` whose word, position and encoder weights are MiniLM's, with
learned 2-D embeddings of each word's box (x0, y0, x1, y1, width, height in 0..1000; they start
as smooth sinusoids of the coordinate, since tables learned from scratch on a few pages memorise
them); the token types are the word casing of the text NER model, plus 4 where the word starts
a line segment (`trainers.ocr.segment_starts`: in a form's reading order, where a phrase ends).
It is fine-tuned end to end, and the saved folder loads with
`transformers.AutoModelForTokenClassification.from_pretrained` (inputs: `input_ids`, `bbox`,
`token_type_ids`). Entities are scored the CoNLL way over the words in their order: an entity
counts when its words and label are exact."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, LayoutLMConfig, LayoutLMForTokenClassification

from trainers import ner_encoder
from trainers.data_check import MIN_TRAIN_TASKS
from trainers.dataset import REGION_TYPES, TrainingDataError, read_snapshot, split_examples
from trainers.embeddings import minilm_path
from trainers.loop import EpochResult, epoch_note, resolve_device, seed_everything, train_while_improving
from trainers.ner import choose_decoding, evaluate, tag_set
from trainers.ocr import SCALE, Word, cache_path, open_image, page_words, percent_box
from trainers.reporting import EpochTable, Reporter
from trainers.spec import TrainParams, TrainSpec
from trainers.text import Span, bio_tags, spans_from_bio

MIN_OVERLAP = 0.5  # share of a word's box inside a region for the word to take the region's label


@dataclass
class Region:
    box: tuple[int, int, int, int]
    label: str


@dataclass
class Page:
    """A task as the tagger sees it; `words` are (text, i, i + 1) so that spans count words."""

    task_id: int
    split: str
    words: list[tuple[str, int, int]]
    boxes: list[tuple[int, int, int, int]]
    tags: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    source: str = ""


def regions_of(results: list[dict], labels: list[str]) -> list[Region]:
    regions = []
    for r in results:
        kind, value = (r.get("type") or "").lower(), r.get("value") or {}
        names = value.get(kind) if kind in REGION_TYPES else None
        if names and "width" in value and names[0] in labels:
            regions.append(Region(percent_box(value), names[0]))
    return regions


def overlap(word: tuple, region: tuple) -> float:
    """Share of the word's box inside the region."""
    w = max(0, min(word[2], region[2]) - max(word[0], region[0]))
    h = max(0, min(word[3], region[3]) - max(word[1], region[1]))
    area = max(1, (word[2] - word[0]) * (word[3] - word[1]))
    return w * h / area


def label_words(words: list[Word], regions: list[Region]) -> tuple[list[str], list[Span], int]:
    """BIO tags of the words in reading order, the entities they make (word index spans), and how
    many regions cover no word. A run of words of one region is one entity."""
    owner = []
    for word in words:
        shares = [(overlap(word.box, r.box), i) for i, r in enumerate(regions)]
        share, best = max(shares, default=(0.0, -1))
        owner.append(best if share >= MIN_OVERLAP else -1)
    spans, start = [], None
    for i, region in enumerate(owner + [-2]):
        if start is not None and (region != owner[start]):
            spans.append(Span(start, i, regions[owner[start]].label))
            start = None
        if i < len(owner) and region >= 0 and start is None:
            start = i
    covered = {o for o in owner if o >= 0}
    word_spans = [(w.text, i, i + 1) for i, w in enumerate(words)]
    tags = bio_tags(word_spans, spans)
    return tags, spans, len(regions) - len(covered)


def read_pages(spec: TrainSpec, reporter: Reporter) -> list[Page]:
    pages, sources, empty_regions = [], {}, 0
    for row in read_snapshot(spec.snapshot):
        where = f"task {row['task_id']}"
        data = json.loads(row.get("data") or "{}")
        results = json.loads(row.get("result") or "[]")
        path = row.get("image_path")
        image = open_image(path) if path else None
        words, _, source = page_words(
            data, results, image, spec.language, where, cache_path(path, spec.language) if path else None
        )
        tags, spans, missed = label_words(words, regions_of(results, spec.labels))
        empty_regions += missed
        sources[source] = sources.get(source, 0) + 1
        pages.append(
            Page(
                row["task_id"],
                row["split"],
                [(w.text, i, i + 1) for i, w in enumerate(words)],
                [w.box for w in words],
                tags,
                spans,
                source,
            )
        )
    reporter.line(
        "OCR words: "
        + ", ".join(f"{n} tasks from {s}" for s, n in sorted(sources.items()))
        + f"; {sum(len(p.words) for p in pages)} words"
    )
    if empty_regions:
        reporter.line(
            f"note: {empty_regions} labelled regions cover no OCR word (at least {MIN_OVERLAP:.0%} of a "
            "word's box must lie in the region); check the OCR language or the regions"
        )
    return pages


def check_examples(pages: list[Page], labels: list[str], snapshot: str, reporter: Reporter) -> None:
    """Too few completions fails the training (a user can fix it); a label without a training
    region over OCR words is said in the log: the model cannot predict it (as for NER)."""
    train = [p for p in pages if p.split == "train" and p.spans]
    least = MIN_TRAIN_TASKS["visual_ner"]
    if len(train) < least:
        raise TrainingDataError(
            f"too few completions: {len(train)} task(s) of the train part of {snapshot} have a "
            f"labelled region over OCR words; Visual NER needs at least {least}",
            reason="too few completions",
        )
    seen = {s.label for p in train for s in p.spans}
    missing = [lab for lab in labels if lab not in seen]
    if missing:
        reporter.line(
            f"note: no region over OCR words in the train part is labelled {', '.join(repr(m) for m in missing)}: "
            "the model cannot predict them"
        )


def build(tags: list[str], params: TrainParams, device: torch.device, reporter: Reporter) -> ner_encoder.TokenTagger:
    source = minilm_path()
    bert = json.loads((source / "config.json").read_text())
    config = LayoutLMConfig(
        vocab_size=bert["vocab_size"],
        hidden_size=bert["hidden_size"],
        num_hidden_layers=bert["num_hidden_layers"],
        num_attention_heads=bert["num_attention_heads"],
        intermediate_size=bert["intermediate_size"],
        hidden_act=bert["hidden_act"],
        hidden_dropout_prob=params.dropout,
        attention_probs_dropout_prob=bert["attention_probs_dropout_prob"],
        max_position_embeddings=bert["max_position_embeddings"],
        type_vocab_size=2 * ner_encoder.CASES,  # casing, and whether the word starts a line segment
        initializer_range=bert["initializer_range"],
        layer_norm_eps=bert["layer_norm_eps"],
        pad_token_id=bert["pad_token_id"],
        max_2d_position_embeddings=SCALE + 24,
        num_labels=len(tags),
        id2label=dict(enumerate(tags)),
        label2id={t: i for i, t in enumerate(tags)},
    )
    model = LayoutLMForTokenClassification(config)
    state = {
        f"layoutlm.{k}": v
        for k, v in load_file(str(source / "model.safetensors")).items()
        if not k.endswith("position_ids")
    }
    types = state["layoutlm.embeddings.token_type_embeddings.weight"]
    state["layoutlm.embeddings.token_type_embeddings.weight"] = types[0].repeat(2 * ner_encoder.CASES, 1)
    # Smooth 2-D tables: sinusoids of the coordinate, each row half as long as MiniLM's position
    # rows. Tables learned from random or zero rows memorise the exact coordinates of a few
    # training pages and do not generalise to the next page.
    norm = 0.5 * float(state["layoutlm.embeddings.position_embeddings.weight"].norm(dim=1).mean())
    table = sinusoids(config.max_2d_position_embeddings, config.hidden_size, norm)
    for name in ("x", "y", "h", "w"):
        state[f"layoutlm.embeddings.{name}_position_embeddings.weight"] = table.clone()
    missing, unexpected = model.load_state_dict(state, strict=False)
    fresh = [k for k in missing if not k.startswith("classifier.")]
    if fresh or unexpected:
        raise RuntimeError(f"MiniLM's weights do not fit LayoutLM: missing {fresh}, unexpected {unexpected}")
    model = model.to(device)
    reporter.line(
        f"model: LayoutLM recipe from MiniLM-L6 (6 layers, hidden 384): word pieces + 2-D box embeddings "
        f"(x0, y0, x1, y1, width, height; sinusoids at start) + word casing and line-segment starts, "
        f"token classification over {len(tags)} BIO tags (head and casing at {ner_encoder.NEW_LAYERS_LR_SCALE:g}x the learning "
        f"rate); {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; windows of "
        f"{params.max_length} word pieces; initialised from {source}"
    )
    return ner_encoder.TokenTagger(model, AutoTokenizer.from_pretrained(source), tags, device, params.max_length)


def sinusoids(n: int, dim: int, norm: float) -> torch.Tensor:
    """[n, dim] rows sin / cos of the position at geometric frequencies (the Transformer's
    encoding), each row scaled to length `norm`."""
    position = torch.arange(n, dtype=torch.float32)[:, None]
    frequency = 10000 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(n, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return table * norm / table.norm(dim=1, keepdim=True)


def lr_scales() -> dict[str, float]:
    """The head and the casing rows start from scratch and learn faster; the 2-D tables learn at
    the base rate from their smooth start."""
    scale = ner_encoder.NEW_LAYERS_LR_SCALE
    return {"classifier.": scale, "layoutlm.embeddings.token_type_embeddings.": scale}


def training_items(tagger: ner_encoder.TokenTagger, pages: list[Page]) -> list:
    """(words, tags, boxes) windows of the training pages."""
    items = []
    for page in pages:
        words = [w for w, _, _ in page.words]
        for s, e in ner_encoder.windows(tagger.tokenizer, words, tagger.max_length):
            items.append((words[s:e], page.tags[s:e], page.boxes[s:e]))
    return items


def loss(tagger: ner_encoder.TokenTagger, batch: list) -> torch.Tensor:
    enc, _, labels = tagger.encode([w for w, _, _ in batch], [t for _, t, _ in batch], [b for _, _, b in batch])
    return tagger.model(**enc, labels=labels).loss


def train_visual_ner(
    spec: TrainSpec, lr: float, reporter: Reporter
) -> tuple[ner_encoder.TokenTagger, dict | None, list[EpochResult], str]:
    """Returns the tagger, test scores (entity and word level), the epochs and a data summary."""
    params = spec.params
    seed_everything(params.seed)
    device = resolve_device(spec.device, reporter)
    pages = read_pages(spec, reporter)
    check_examples(pages, spec.labels, spec.snapshot, reporter)
    splits = split_examples(pages, [p.split for p in pages], params.validation_share, params.seed)
    tags = tag_set(spec.labels)
    tagger = build(tags, params, device, reporter)
    items = training_items(tagger, splits.train)
    summary = f"pages: {splits.sizes()}; {len(items)} training windows"
    reporter.line(summary)

    def validate() -> dict | None:
        if not splits.validation:
            return None
        return evaluate(tagger, splits.validation, spec.labels, [p.boxes for p in splits.validation])["entity"]["micro"]

    table, epochs = EpochTable(reporter), []
    for result in train_while_improving(
        tagger.model,
        items,
        params,
        lr,
        lambda b: loss(tagger, b),
        validate,
        lambda f: reporter.progress(100 * f * 0.95),
        length=lambda item: len(item[0]),
        lr_scales=lr_scales(),
        checkpoints=reporter.checkpoints,
    ):
        table.row(
            result.epoch, result.loss, result.scores, result.seconds, epoch_note(result, params.early_stopping_patience)
        )
        reporter.progress(100 * 0.95 * result.epoch / params.epochs, result.epoch, result.scores)
        epochs.append(result)
    choose_decoding(
        tagger,
        [p.tags for p in splits.train],
        splits.validation,
        spec.labels,
        reporter,
        [p.boxes for p in splits.validation],
    )
    with torch.no_grad():
        scores = evaluate(tagger, splits.test, spec.labels, [p.boxes for p in splits.test]) if splits.test else None
    return tagger, scores, epochs, summary


def predict_regions(tagger: ner_encoder.TokenTagger, pages: list[list[Word]]) -> list[list[tuple[Region, str]]]:
    """For each page's words (reading order): the entities as (region = union of the words' boxes,
    their text)."""
    tag_lists = tagger.predict_tags(
        [[w.text for w in words] for words in pages], box_lists=[[w.box for w in words] for words in pages]
    )
    out = []
    for words, tags in zip(pages, tag_lists):
        found = []
        for span in spans_from_bio([(w.text, i, i + 1) for i, w in enumerate(words)], tags):
            group = words[span.start : span.end]
            box = (
                min(w.box[0] for w in group),
                min(w.box[1] for w in group),
                max(w.box[2] for w in group),
                max(w.box[3] for w in group),
            )
            found.append((Region(box, span.label), " ".join(w.text for w in group)))
        out.append(found)
    return out
