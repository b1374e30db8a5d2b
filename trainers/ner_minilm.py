"""NER by fine-tuning MiniLM for token classification over words (the first word piece of
each word carries its BIO tag); long documents are cut into windows that fit `max_length`.

The packaged MiniLM is uncased, and casing carries much of the signal of names. Each word's
casing (lower, Title, UPPER, with digits) reaches the model through BERT's token-type
embeddings, widened from 2 to 4 rows that all start as the pretrained row 0: the saved model
stays a plain `BertForTokenClassification`. `TokenTagger` passes the casing; a plain
`transformers.pipeline` passes type 0 (lower case) and so predicts without it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForTokenClassification, AutoTokenizer

from trainers.embeddings import minilm_path
from trainers.reporting import Reporter
from trainers.spec import TrainParams


CASES = 4


def word_case(word: str) -> int:
    if any(c.isdigit() for c in word):
        return 3
    if len(word) > 1 and word.isupper():
        return 2
    if word[:1].isupper():
        return 1
    return 0


def windows(tokenizer, words: list[str], max_length: int) -> list[tuple[int, int]]:
    """[start, end) word ranges whose word pieces fit in max_length - 2 (CLS and SEP)."""
    if not words:
        return []
    pieces = [0] * len(words)
    for wid in tokenizer(words, is_split_into_words=True, add_special_tokens=False).word_ids():
        if wid is not None:
            pieces[wid] += 1
    ranges, start, used = [], 0, 0
    for i, n in enumerate(pieces):
        n = min(n, max_length - 2)
        if used + n > max_length - 2:
            ranges.append((start, i))
            start, used = i, 0
        used += n
    ranges.append((start, len(words)))
    return ranges


@dataclass
class TokenTagger:
    model: AutoModelForTokenClassification
    tokenizer: AutoTokenizer
    tags: list[str]
    device: torch.device
    max_length: int

    def encode(self, word_lists: list[list[str]], tag_lists: list[list[str]] | None = None):
        enc = self.tokenizer(word_lists, is_split_into_words=True, truncation=True, max_length=self.max_length,
                             padding=True, return_tensors="pt")
        first_piece = []
        cases = torch.zeros(enc["input_ids"].shape, dtype=torch.long)
        for row, words in enumerate(word_lists):
            seen, firsts = set(), []
            for pos, wid in enumerate(enc.word_ids(row)):
                if wid is None:
                    continue
                cases[row, pos] = word_case(words[wid])
                if wid not in seen:
                    seen.add(wid)
                    firsts.append((pos, wid))
            first_piece.append(firsts)
        enc["token_type_ids"] = cases
        labels = None
        if tag_lists is not None:
            index = {t: i for i, t in enumerate(self.tags)}
            labels = torch.full(enc["input_ids"].shape, -100, dtype=torch.long)
            for row, firsts in enumerate(first_piece):
                for pos, wid in firsts:
                    labels[row, pos] = index[tag_lists[row][wid]]
            labels = labels.to(self.device)
        return enc.to(self.device), first_piece, labels

    def predict_tags(self, word_lists: list[list[str]], batch_size: int = 32) -> list[list[str]]:
        """Tags for whole documents (windowed inside)."""
        self.model.eval()
        pieces = [(d, s, e) for d, words in enumerate(word_lists)
                  for s, e in windows(self.tokenizer, words, self.max_length)]
        out = [["O"] * len(words) for words in word_lists]
        with torch.no_grad():
            for i in range(0, len(pieces), batch_size):
                chunk = pieces[i:i + batch_size]
                enc, first_piece, _ = self.encode([word_lists[d][s:e] for d, s, e in chunk])
                best = self.model(**enc).logits.argmax(-1).cpu()
                for row, (d, s, _) in enumerate(chunk):
                    for pos, wid in first_piece[row]:
                        out[d][s + wid] = self.tags[int(best[row, pos])]
        return out

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def load(cls, directory: Path, max_length: int, device: str = "cpu") -> "TokenTagger":
        model = AutoModelForTokenClassification.from_pretrained(directory).to(device)
        tags = [model.config.id2label[i] for i in range(model.config.num_labels)]
        return cls(model, AutoTokenizer.from_pretrained(directory), tags, torch.device(device), max_length)


def build(tags: list[str], params: TrainParams, device: torch.device, reporter: Reporter) -> TokenTagger:
    source = minilm_path()
    model = AutoModelForTokenClassification.from_pretrained(
        source, num_labels=len(tags), id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)},
        classifier_dropout=params.dropout)
    types = model.base_model.embeddings.token_type_embeddings
    cased = nn.Embedding(CASES, types.embedding_dim)
    cased.weight.data[:] = types.weight.data[0]
    model.base_model.embeddings.token_type_embeddings = cased
    model.config.type_vocab_size = CASES
    model = model.to(device)
    reporter.line(f"model: MiniLM-L6 encoder (6 layers, hidden 384) + word casing (4 token types) + token "
                  f"classification head over {len(tags)} BIO tags; "
                  f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; "
                  f"windows of {params.max_length} word pieces; source {source}")
    return TokenTagger(model, AutoTokenizer.from_pretrained(source), tags, device, params.max_length)


def training_items(tagger: TokenTagger, word_lists: list[list[str]], tag_lists: list[list[str]]) -> list:
    """(words, tags) windows of the training documents."""
    return [(words[s:e], tags[s:e]) for words, tags in zip(word_lists, tag_lists)
            for s, e in windows(tagger.tokenizer, words, tagger.max_length)]


def loss(tagger: TokenTagger, batch: list) -> torch.Tensor:
    enc, _, labels = tagger.encode([w for w, _ in batch], [t for _, t in batch])
    return tagger.model(**enc, labels=labels).loss
