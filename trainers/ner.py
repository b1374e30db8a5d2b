"""NER training: documents -> words + BIO tags -> a tagger (MiniLM or BiLSTM-CRF) -> entity and
token scores (exact character span and type, the CoNLL definition)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainers import ner_bilstm, ner_encoder
from trainers.dataset import Document, split_examples
from trainers.loop import EpochResult, epoch_note, resolve_device, seed_everything, train_while_improving
from trainers.metrics import ner_scores
from trainers.recipes import MAX_EPOCHS, MIN_STEPS, small_data_schedule
from trainers.reporting import EpochTable, Reporter
from trainers.spec import TrainSpec
from trainers.text import Span, bio_tags, spans_from_bio, tokenize


@dataclass
class NerDocument:
    text: str
    words: list[tuple[str, int, int]]
    tags: list[str]
    spans: list[Span]


def prepare(documents: list[Document], labels: list[str], reporter: Reporter) -> list[NerDocument]:
    prepared, off_boundary = [], 0
    for doc in documents:
        words = tokenize(doc.text)
        spans = [s for s in doc.spans if s.label in labels]
        starts, ends = {w[1] for w in words}, {w[2] for w in words}
        off_boundary += sum(s.start not in starts or s.end not in ends for s in spans)
        prepared.append(NerDocument(doc.text, words, bio_tags(words, spans), spans))
    if off_boundary:
        reporter.line(
            f"note: {off_boundary} entity spans do not start or end on a word boundary; "
            "their words are tagged by overlap"
        )
    return prepared


def tag_set(labels: list[str]) -> list[str]:
    return ["O"] + [f"{p}-{label}" for label in labels for p in ("B", "I")]


def evaluate(tagger, docs: list[NerDocument], labels: list[str], box_lists: list | None = None) -> dict:
    """Entity and token scores of documents (or Visual NER pages, with `box_lists`)."""
    words = [[w for w, _, _ in d.words] for d in docs]
    predicted = tagger.predict_tags(words) if box_lists is None else tagger.predict_tags(words, box_lists=box_lists)
    return ner_scores(
        [d.spans for d in docs],
        [spans_from_bio(d.words, tags) for d, tags in zip(docs, predicted)],
        [d.tags for d in docs],
        predicted,
        labels,
    )


def train_ner(
    spec: TrainSpec, documents: list[Document], lr: float, reporter: Reporter
) -> tuple[object, dict, list[EpochResult], str]:
    """Returns the tagger, test scores, the epochs and a data summary line."""
    params = spec.params
    seed_everything(params.seed)
    device = resolve_device(spec.device, reporter)
    docs = prepare(documents, spec.labels, reporter)
    splits = split_examples(docs, [d.split for d in documents], params.validation_share, params.seed)
    tags = tag_set(spec.labels)
    train_words = [[w for w, _, _ in d.words] for d in splits.train]
    train_tags = [d.tags for d in splits.train]
    if spec.embeddings == "bilstm":
        tagger, module = ner_bilstm.build(train_words, tags, params, device, reporter), ner_bilstm
        items, scales = list(zip(train_words, train_tags)), None
    else:
        tagger, module = ner_encoder.build(tags, params, device, reporter, spec.encoder), ner_encoder
        items = ner_encoder.training_items(tagger, train_words, train_tags)
        scales = ner_encoder.lr_scales(tagger)
    summary = f"documents: {splits.sizes()}; {len(items)} training sequences"
    reporter.line(summary)
    schedule = small_data_schedule(len(items), params.batch_size, params.epochs, frozenset(spec.given))
    if schedule:
        params = params.model_copy(update={"batch_size": schedule[0], "epochs": schedule[1]})
        reporter.line(
            f"small training part ({len(items)} sequences): batch_size={params.batch_size}, epochs={params.epochs} "
            f"(at least {MIN_STEPS} steps, at most {MAX_EPOCHS} epochs; --batch-size and --epochs choose)"
        )

    def validate() -> dict | None:
        if not splits.validation:
            return None
        if isinstance(tagger, ner_encoder.TokenTagger) and tagger.learned_transitions():  # a CRF's, as they stand
            tagger.prior_weight = 1.0
        return evaluate(tagger, splits.validation, spec.labels)["entity"]["micro"]

    table, epochs = EpochTable(reporter), []
    for result in train_while_improving(
        tagger.model,
        items,
        params,
        lr,
        lambda b: module.loss(tagger, b),
        validate,
        lambda f: reporter.progress(100 * f * 0.95),
        length=lambda item: len(item[0]),
        lr_scales=scales,
        checkpoints=reporter.checkpoints,
    ):
        table.row(
            result.epoch, result.loss, result.scores, result.seconds, epoch_note(result, params.early_stopping_patience)
        )
        reporter.progress(100 * 0.95 * result.epoch / params.epochs, result.epoch, result.scores)
        epochs.append(result)
    if spec.embeddings != "bilstm":
        choose_decoding(tagger, train_tags, splits.validation, spec.labels, reporter)
    with torch.no_grad():
        scores = evaluate(tagger, splits.test, spec.labels) if splits.test else None
    return tagger, scores, epochs, summary


def choose_decoding(
    tagger,
    train_tags: list[list[str]],
    validation: list[NerDocument],
    labels: list[str],
    reporter: Reporter,
    box_lists: list | None = None,
) -> None:
    """The weight of the transition prior in Viterbi decoding (a CRF's learned transitions, or
    those counted on the training data), chosen on validation (without validation: a CRF's
    weight 1, or constraints only)."""
    learned = tagger.learned_transitions()
    if not learned:
        tagger.prior = ner_encoder.transition_prior(tagger.tags, train_tags)
    kind = "the CRF's learned transitions" if learned else "transition prior"
    if not validation:
        tagger.prior_weight = 1.0 if learned else 0.0
        reporter.line(
            f"decoding: Viterbi with BIO constraints{' + ' + kind if learned else ''} (no validation part to weigh it)"
        )
        return
    log_probs = tagger.word_log_probs([[w for w, _, _ in d.words] for d in validation], box_lists=box_lists)
    results = {}
    for weight in ner_encoder.PRIOR_WEIGHTS:
        tags = tagger.decode(log_probs, weight)
        results[weight] = ner_scores(
            [d.spans for d in validation],
            [spans_from_bio(d.words, t) for d, t in zip(validation, tags)],
            [d.tags for d in validation],
            tags,
            labels,
        )["entity"]["micro"]["f1"]
    # ties: a CRF's weights as trained, a counted prior's smallest weight
    tagger.prior_weight = max(results, key=lambda w: (results[w], w if learned else -w))
    reporter.line(
        f"decoding: Viterbi with BIO constraints + {kind}; validation F1 by its weight: "
        + ", ".join(f"{w:g}: {f:.4f}" for w, f in results.items())
        + f"; chosen {tagger.prior_weight:g}"
    )


def predict_spans(tagger, texts: list[str]) -> list[list[Span]]:
    words = [tokenize(t) for t in texts]
    tags = tagger.predict_tags([[w for w, _, _ in ws] for ws in words])
    return [spans_from_bio(ws, ts) for ws, ts in zip(words, tags)]
