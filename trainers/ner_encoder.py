"""NER by fine-tuning an encoder (the packaged MiniLM, or a registered one: `trainers.encoders`) for
token classification over words (the first sub-word of each word carries its BIO tag, found by the
fast tokenizer's word ids); long documents are cut into windows that fit `max_length`.

The packaged MiniLM is uncased, and casing carries much of the signal of names. For an uncased
encoder with token types, each word's casing (lower, Title, UPPER, with digits) reaches the model
through its token-type embeddings, widened from 2 to 4 rows that all start as the pretrained row 0:
the saved model stays a plain `...ForTokenClassification`; a cased encoder reads casing itself. `TokenTagger` passes the casing; a plain
`transformers.pipeline` passes type 0 (lower case) and so predicts without it.

`TokenTagger` decodes each document with Viterbi: tag sequences BIO forbids (O then I-X, B-X
then I-Y) are ruled out, and a prior of tag-to-tag transitions counted on the training data is
added with a weight chosen on validation (`transitions.json` beside the model; a plain pipeline
takes the argmax instead). With `crf` the transitions are not counted but learned with the encoder:
a linear-chain CRF over the words' scores (BIO's forbidden steps ruled out there too) is the
training loss, and its transitions, start and end scores take the counted prior's place in
`transitions.json`; the saved model is the same plain `BertForTokenClassification`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForTokenClassification, AutoTokenizer

from labtrain.encoders import Encoder
from trainers.embeddings import minilm_path
from trainers.encoders import head_config, load_tokenizer, local_folder
from trainers.ocr import segment_starts
from trainers.reporting import Reporter
from trainers.spec import TrainParams

CASES = 4
# The classifier and the casing rows start from scratch: they learn at this multiple of the
# learning rate, so that casing shapes the model within a few epochs.
NEW_LAYERS_LR_SCALE = 20.0


def word_case(word: str) -> int:
    if any(c.isdigit() for c in word):
        return 3
    if len(word) > 1 and word.isupper():
        return 2
    if word[:1].isupper():
        return 1
    return 0


def piece_counts(tokenizer, words: list[str], max_length: int) -> list[int]:
    pieces = [0] * len(words)
    for wid in tokenizer(words, is_split_into_words=True, add_special_tokens=False).word_ids():
        if wid is not None:
            pieces[wid] += 1
    return [min(n, max_length - 2) for n in pieces]


def windows(tokenizer, words: list[str], max_length: int) -> list[tuple[int, int]]:
    """[start, end) word ranges, one after another, whose word pieces fit in max_length - 2 (CLS and SEP)."""
    if not words:
        return []
    ranges, start, used = [], 0, 0
    for i, n in enumerate(piece_counts(tokenizer, words, max_length)):
        if used + n > max_length - 2:
            ranges.append((start, i))
            start, used = i, 0
        used += n
    ranges.append((start, len(words)))
    return ranges


def overlapping_windows(tokenizer, words: list[str], max_length: int) -> list[tuple[int, int]]:
    """Windows that fit, each starting at the middle of the one before, so that every word of a long
    document is seen with context on both sides by some window (prediction keeps, for each word, the
    window in which it is farthest from an edge)."""
    if not words:
        return []
    pieces = piece_counts(tokenizer, words, max_length)
    ranges, start = [], 0
    while True:
        end, used = start, 0
        while end < len(words) and used + pieces[end] <= max_length - 2:
            used, end = used + pieces[end], end + 1
        ranges.append((start, end))
        if end >= len(words):
            return ranges
        start = max(start + 1, (start + end) // 2)


TRANSITIONS_FILE = "transitions.json"
PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
FORBIDDEN = -1e4


def bio_constraints(tags: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """[from, to] and start scores: 0 where BIO allows the tag, FORBIDDEN where it does not."""
    n = len(tags)
    between, start = torch.zeros(n, n), torch.zeros(n)
    for b, to in enumerate(tags):
        if to.startswith("I-"):
            start[b] = FORBIDDEN
            for a, frm in enumerate(tags):
                if frm == "O" or frm[2:] != to[2:]:
                    between[a, b] = FORBIDDEN
    return between, start


def transition_prior(tags: list[str], tag_lists: list[list[str]]) -> torch.Tensor:
    """log P(next tag | tag) counted on training data (add-one smoothed)."""
    index = {t: i for i, t in enumerate(tags)}
    counts = torch.ones(len(tags), len(tags))
    for seq in tag_lists:
        for a, b in zip(seq, seq[1:]):
            counts[index[a], index[b]] += 1
    return torch.log(counts / counts.sum(1, keepdim=True))


def viterbi(
    log_probs: torch.Tensor, between: torch.Tensor, start: torch.Tensor, end: torch.Tensor | None = None
) -> list[int]:
    score, back = start + log_probs[0], []
    for t in range(1, len(log_probs)):
        score, best = (score[:, None] + between + log_probs[t][None, :]).max(0)
        back.append(best)
    if end is not None:
        score = score + end
    path = [int(score.argmax())]
    for best in reversed(back):
        path.append(int(best[path[-1]]))
    return path[::-1]


class Crf(nn.Module):
    """A linear-chain CRF's learned scores: tag-to-tag transitions [from, to], start and end. The
    steps BIO forbids are fixed at FORBIDDEN (a buffer, not learned), so that the partition
    function counts only sequences a decoder may return."""

    def __init__(self, tags: list[str]):
        super().__init__()
        n = len(tags)
        self.transitions = nn.Parameter(torch.zeros(n, n))
        self.start = nn.Parameter(torch.zeros(n))
        self.end = nn.Parameter(torch.zeros(n))
        between, start = bio_constraints(tags)
        self.register_buffer("forbidden_between", between, persistent=False)
        self.register_buffer("forbidden_start", start, persistent=False)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood of the gold tags over padded [batch, words, tags] scores
        (every row has at least one word)."""
        between = self.transitions + self.forbidden_between
        start = self.start + self.forbidden_start
        rows = torch.arange(emissions.size(0), device=emissions.device)
        gold = start[tags[:, 0]] + emissions[rows, 0, tags[:, 0]]
        alpha = start + emissions[:, 0]
        for t in range(1, emissions.size(1)):
            m = mask[:, t]
            step = between[tags[:, t - 1], tags[:, t]] + emissions[rows, t, tags[:, t]]
            gold = gold + step * m
            nxt = torch.logsumexp(alpha.unsqueeze(2) + between + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(m.unsqueeze(1), nxt, alpha)
        gold = gold + self.end[tags[rows, mask.sum(1) - 1]]
        return (torch.logsumexp(alpha + self.end, dim=1) - gold).sum()


@dataclass
class TokenTagger:
    model: AutoModelForTokenClassification
    tokenizer: AutoTokenizer
    tags: list[str]
    device: torch.device
    max_length: int
    prior: torch.Tensor | None = None  # log transition probabilities from training data
    prior_weight: float = 0.0
    start_prior: torch.Tensor | None = None  # a CRF's learned start and end scores (None: counted prior)
    end_prior: torch.Tensor | None = None
    constraints: tuple = field(default=(), repr=False)
    casing: bool = True  # False: the tokenizer's own inputs (a model trained elsewhere, e.g. by a custom script)

    def __post_init__(self):
        self.constraints = bio_constraints(self.tags)

    def encode(
        self,
        word_lists: list[list[str]],
        tag_lists: list[list[str]] | None = None,
        box_lists: list[list[tuple]] | None = None,
    ):
        """Model inputs; with `box_lists` (Visual NER: each word's box in 0..1000) also LayoutLM's
        `bbox`, [CLS] at the page's top left corner and [SEP] at its bottom right, and, for a model
        with twice the casing rows, whether the word starts a line segment (`trainers.ocr.segment_starts`)
        as the second half of its token type."""
        enc = self.tokenizer(
            word_lists,
            is_split_into_words=True,
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        first_piece = []
        cases = torch.zeros(enc["input_ids"].shape, dtype=torch.long)
        bbox = torch.zeros((*enc["input_ids"].shape, 4), dtype=torch.long) if box_lists is not None else None
        flagged = box_lists is not None and self.model.config.type_vocab_size == 2 * CASES
        for row, words in enumerate(word_lists):
            seen, firsts = set(), []
            starts = segment_starts(box_lists[row]) if flagged else None
            for pos, wid in enumerate(enc.word_ids(row)):
                if wid is None:
                    if bbox is not None and enc["input_ids"][row, pos] == self.tokenizer.sep_token_id:
                        bbox[row, pos] = 1000
                    continue
                cases[row, pos] = word_case(words[wid]) + (CASES if starts and starts[wid] else 0)
                if bbox is not None:
                    bbox[row, pos] = torch.tensor(box_lists[row][wid])
                if wid not in seen:
                    seen.add(wid)
                    firsts.append((pos, wid))
            first_piece.append(firsts)
        if self.casing:
            enc["token_type_ids"] = cases
        if bbox is not None:
            enc["bbox"] = bbox
        labels = None
        if tag_lists is not None:
            index = {t: i for i, t in enumerate(self.tags)}
            labels = torch.full(enc["input_ids"].shape, -100, dtype=torch.long)
            for row, firsts in enumerate(first_piece):
                for pos, wid in firsts:
                    labels[row, pos] = index[tag_lists[row][wid]]
            labels = labels.to(self.device)
        return enc.to(self.device), first_piece, labels

    def word_log_probs(
        self, word_lists: list[list[str]], batch_size: int = 32, box_lists: list[list[tuple]] | None = None
    ) -> list[torch.Tensor]:
        """Per document, [words, tags] log-probabilities from overlapping windows (each word
        from the window in which it is farthest from an edge)."""
        self.model.eval()
        pieces = [
            (d, s, e)
            for d, words in enumerate(word_lists)
            for s, e in overlapping_windows(self.tokenizer, words, self.max_length)
        ]
        out = [torch.zeros(len(words), len(self.tags)) for words in word_lists]
        margin = [[-1] * len(words) for words in word_lists]
        with torch.no_grad():
            for i in range(0, len(pieces), batch_size):
                chunk = pieces[i : i + batch_size]
                enc, first_piece, _ = self.encode(
                    [word_lists[d][s:e] for d, s, e in chunk],
                    None,
                    None if box_lists is None else [box_lists[d][s:e] for d, s, e in chunk],
                )
                log_probs = torch.log_softmax(self.model(**enc).logits.float(), -1).cpu()
                for row, (d, s, e) in enumerate(chunk):
                    for pos, wid in first_piece[row]:
                        edge = min(wid, e - s - 1 - wid)
                        if edge > margin[d][s + wid]:
                            margin[d][s + wid] = edge
                            out[d][s + wid] = log_probs[row, pos]
        return out

    def decode(self, log_probs: list[torch.Tensor], prior_weight: float | None = None) -> list[list[str]]:
        weight = self.prior_weight if prior_weight is None else prior_weight
        between, start = self.constraints
        end = None
        if self.prior is not None and weight:
            between = between + weight * self.prior
            if self.start_prior is not None:
                start, end = start + weight * self.start_prior, weight * self.end_prior
        return [[self.tags[i] for i in viterbi(lp, between, start, end)] if len(lp) else [] for lp in log_probs]

    def predict_tags(
        self, word_lists: list[list[str]], batch_size: int = 32, box_lists: list[list[tuple]] | None = None
    ) -> list[list[str]]:
        """Tags for whole documents (pages, with their words' boxes)."""
        return self.decode(self.word_log_probs(word_lists, batch_size, box_lists))

    def save(self, directory: Path) -> None:
        """A plain `BertForTokenClassification` (without a training CRF's scores, which go to
        `transitions.json`) and its tokenizer."""
        state = {k: v for k, v in self.model.state_dict().items() if not k.startswith("crf.")}
        self.model.save_pretrained(directory, state_dict=state)
        self.tokenizer.save_pretrained(directory)
        info = {
            "tags": self.tags,
            "prior_weight": self.prior_weight,
            "log_prior": None if self.prior is None else self.prior.tolist(),
        }
        if self.start_prior is not None:
            info |= {"start": self.start_prior.tolist(), "end": self.end_prior.tolist()}
        (Path(directory) / TRANSITIONS_FILE).write_text(json.dumps(info))

    @classmethod
    def load(cls, directory: Path, max_length: int, device: str = "cpu") -> TokenTagger:
        model = AutoModelForTokenClassification.from_pretrained(directory).to(device)
        tags = [model.config.id2label[i] for i in range(model.config.num_labels)]
        tokenizer = load_tokenizer(directory, model.config.model_type)
        casing = getattr(model.config, "type_vocab_size", 0) in (CASES, 2 * CASES)  # trained with the casing rows
        tagger = cls(model, tokenizer, tags, torch.device(device), max_length, casing=casing)
        saved = Path(directory) / TRANSITIONS_FILE
        if saved.exists():
            info = json.loads(saved.read_text())
            tagger.prior_weight = info["prior_weight"]
            tagger.prior = None if info["log_prior"] is None else torch.tensor(info["log_prior"])
            if "start" in info:
                tagger.start_prior, tagger.end_prior = torch.tensor(info["start"]), torch.tensor(info["end"])
        return tagger

    def learned_transitions(self) -> bool:
        """Takes a training CRF's scores as the decoding prior; False when the model has no CRF."""
        crf = getattr(self.model, "crf", None)
        if crf is None:
            return False
        self.prior, self.start_prior, self.end_prior = (
            p.detach().float().cpu() for p in (crf.transitions, crf.start, crf.end)
        )
        return True


def build(
    tags: list[str], params: TrainParams, device: torch.device, reporter: Reporter, encoder: Encoder | None = None
) -> TokenTagger:
    """The packaged MiniLM, or a registered encoder, with a token classification head over `tags`.
    An uncased encoder with token types (MiniLM, BERT uncased) gets the word casing rows; a cased
    one reads the casing from its word pieces."""
    source = local_folder(encoder) if encoder else minilm_path()
    config = head_config(
        source,
        params.dropout,
        num_labels=len(tags),
        id2label=dict(enumerate(tags)),
        label2id={t: i for i, t in enumerate(tags)},
    )
    model = AutoModelForTokenClassification.from_pretrained(source, config=config)
    embeddings = model.base_model.embeddings
    casing = not (encoder and encoder.cased) and getattr(embeddings, "token_type_embeddings", None) is not None
    if casing:
        types = embeddings.token_type_embeddings
        cased = nn.Embedding(CASES, types.embedding_dim)
        cased.weight.data[:] = types.weight.data[0]
        embeddings.token_type_embeddings = cased
        model.config.type_vocab_size = CASES
    if params.crf:
        model.crf = Crf(tags)  # trained with the model, saved apart (TokenTagger.save)
    model = model.to(device)
    max_length = min(params.max_length, encoder.max_length) if encoder else params.max_length
    what = (
        f"{encoder.name} ({encoder.architecture}, {encoder.layers} layers, hidden {encoder.hidden_size}, "
        f"{'cased' if encoder.cased else 'uncased'} {encoder.tokenizer})"
        if encoder
        else "MiniLM-L6 encoder (6 layers, hidden 384)"
    )
    reporter.line(
        f"model: {what}{' + word casing (4 token types)' if casing else ''} + token "
        f"classification head over {len(tags)} BIO tags{' + CRF (learned transitions)' if params.crf else ''} "
        f"(head{' and casing' if casing else ''} at {NEW_LAYERS_LR_SCALE:g}x the learning rate); "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; "
        f"windows of {max_length} word pieces; source {source}"
    )
    tokenizer = load_tokenizer(source, model.config.model_type)
    return TokenTagger(model, tokenizer, tags, device, max_length, casing=casing)


def training_items(tagger: TokenTagger, word_lists: list[list[str]], tag_lists: list[list[str]]) -> list:
    """(words, tags) windows of the training documents."""
    return [
        (words[s:e], tags[s:e])
        for words, tags in zip(word_lists, tag_lists)
        for s, e in windows(tagger.tokenizer, words, tagger.max_length)
    ]


def lr_scales(tagger: TokenTagger) -> dict[str, float]:
    base = tagger.model.base_model_prefix
    return {
        "classifier.": NEW_LAYERS_LR_SCALE,
        "crf.": NEW_LAYERS_LR_SCALE,
        f"{base}.embeddings.token_type_embeddings.": NEW_LAYERS_LR_SCALE,
    }


def loss(tagger: TokenTagger, batch: list) -> torch.Tensor:
    """Cross-entropy per word; with a CRF its negative log-likelihood per word."""
    enc, first_piece, labels = tagger.encode([w for w, _ in batch], [t for _, t in batch])
    crf = getattr(tagger.model, "crf", None)
    if crf is None:
        return tagger.model(**enc, labels=labels).loss
    logits = tagger.model(**enc).logits
    width = max(len(firsts) for firsts in first_piece)
    positions = torch.zeros(len(batch), width, dtype=torch.long, device=logits.device)
    mask = torch.zeros(len(batch), width, dtype=torch.bool, device=logits.device)
    for row, firsts in enumerate(first_piece):
        positions[row, : len(firsts)] = torch.tensor([pos for pos, _ in firsts])
        mask[row, : len(firsts)] = True
    rows = torch.arange(len(batch), device=logits.device).unsqueeze(1)
    tags = torch.where(mask, labels[rows, positions], 0)
    with torch.autocast(logits.device.type, enabled=False):
        return crf.nll(logits[rows, positions].float(), tags, mask) / mask.sum()
