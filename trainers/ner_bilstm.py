"""NER with a char-CNN + word BiLSTM-CRF trained from scratch: any language, fast on CPU
(the family of Spark NLP's NerDL). Saved as `model.pt` (state dict) + `config.json`; load it
with `BiLstmTagger.load(directory)`."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trainers.reporting import Reporter
from trainers.spec import TrainParams

PAD, UNK = 0, 1
MAX_CHARS = 20


def casing(word: str) -> int:
    if word.isdigit():
        return 1
    if word.isupper():
        return 2
    if word[:1].isupper():
        return 3
    if word.islower():
        return 4
    return 5 if any(c.isdigit() for c in word) else 6


class CRF(nn.Module):
    """Linear-chain CRF: negative log-likelihood and Viterbi decoding over padded batches."""

    def __init__(self, n_tags: int):
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(n_tags, n_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(n_tags))
        self.end = nn.Parameter(torch.zeros(n_tags))

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch = torch.arange(emissions.size(0), device=emissions.device)
        score = self.start[tags[:, 0]] + emissions[batch, 0, tags[:, 0]]
        alpha = self.start + emissions[:, 0]
        for t in range(1, emissions.size(1)):
            m = mask[:, t]
            step = self.transitions[tags[:, t - 1], tags[:, t]] + emissions[batch, t, tags[:, t]]
            score = score + step * m
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(m.unsqueeze(1), nxt, alpha)
        last = tags[batch, mask.sum(1) - 1]
        score = score + self.end[last]
        return (torch.logsumexp(alpha + self.end, dim=1) - score).mean()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        score = self.start + emissions[:, 0]
        history = []
        for t in range(1, emissions.size(1)):
            total = score.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1)
            best, index = total.max(dim=1)
            history.append(index)
            score = torch.where(mask[:, t].unsqueeze(1), best, score)
        score = score + self.end
        paths = []
        for b in range(emissions.size(0)):
            length = int(mask[b].sum())
            tag = int(score[b].argmax())
            path = [tag]
            for t in range(length - 1, 0, -1):
                tag = int(history[t - 1][b, tag])
                path.append(tag)
            paths.append(path[::-1])
        return paths


class BiLstmCrf(nn.Module):
    def __init__(
        self,
        n_words: int,
        n_chars: int,
        n_tags: int,
        word_dim: int = 100,
        char_dim: int = 25,
        char_filters: int = 50,
        case_dim: int = 10,
        hidden: int = 200,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.words = nn.Embedding(n_words, word_dim, padding_idx=PAD)
        self.chars = nn.Embedding(n_chars, char_dim, padding_idx=PAD)
        self.char_cnn = nn.Conv1d(char_dim, char_filters, kernel_size=3, padding=1)
        self.case = nn.Embedding(7, case_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(word_dim + char_filters + case_dim, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, n_tags)
        self.crf = CRF(n_tags)

    def emissions(self, words, chars, case):
        b, t, c = chars.shape
        char_vec = self.char_cnn(self.chars(chars.view(b * t, c)).transpose(1, 2)).max(dim=2).values.view(b, t, -1)
        x = self.dropout(torch.cat([self.words(words), char_vec, self.case(case)], dim=-1))
        return self.out(self.dropout(self.lstm(x)[0]))


@dataclass
class BiLstmTagger:
    model: BiLstmCrf
    vocab: dict[str, int]
    chars: dict[str, int]
    tags: list[str]
    device: torch.device
    dims: dict

    def tensors(self, word_lists: list[list[str]]):
        t = max(1, max((len(w) for w in word_lists), default=1))
        words = torch.zeros(len(word_lists), t, dtype=torch.long)
        chars = torch.zeros(len(word_lists), t, MAX_CHARS, dtype=torch.long)
        case = torch.zeros(len(word_lists), t, dtype=torch.long)
        mask = torch.zeros(len(word_lists), t, dtype=torch.bool)
        for i, ws in enumerate(word_lists):
            for j, w in enumerate(ws):
                words[i, j] = self.vocab.get(w.lower(), UNK)
                for k, ch in enumerate(w[:MAX_CHARS]):
                    chars[i, j, k] = self.chars.get(ch, UNK)
                case[i, j] = casing(w)
                mask[i, j] = True
        mask[:, 0] = True  # empty documents still need one step
        to = lambda x: x.to(self.device)  # noqa: E731
        return to(words), to(chars), to(case), to(mask)

    def predict_tags(self, word_lists: list[list[str]], batch_size: int = 64) -> list[list[str]]:
        self.model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(word_lists), batch_size):
                chunk = word_lists[i : i + batch_size]
                words, chars, case, mask = self.tensors(chunk)
                paths = self.model.crf.decode(self.model.emissions(words, chars, case), mask)
                out.extend([[self.tags[k] for k in path][: len(ws)] for path, ws in zip(paths, chunk)])
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), directory / "model.pt")
        (directory / "config.json").write_text(
            json.dumps(
                {
                    "architecture": "char-CNN + BiLSTM-CRF",
                    "vocab": self.vocab,
                    "chars": self.chars,
                    "tags": self.tags,
                    "dims": self.dims,
                }
            )
        )

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> BiLstmTagger:
        config = json.loads((Path(directory) / "config.json").read_text())
        model = BiLstmCrf(len(config["vocab"]), len(config["chars"]), len(config["tags"]), **config["dims"])
        model.load_state_dict(torch.load(Path(directory) / "model.pt", map_location=device, weights_only=True))
        return cls(
            model.to(device), config["vocab"], config["chars"], config["tags"], torch.device(device), config["dims"]
        )


def build(
    word_lists: list[list[str]], tags: list[str], params: TrainParams, device: torch.device, reporter: Reporter
) -> BiLstmTagger:
    counts = Counter(w.lower() for ws in word_lists for w in ws)
    vocab = {"<pad>": PAD, "<unk>": UNK}
    for word, _n in counts.most_common():
        vocab.setdefault(word, len(vocab))
    chars = {"<pad>": PAD, "<unk>": UNK}
    for ch in sorted({c for ws in word_lists for w in ws for c in w}):
        chars.setdefault(ch, len(chars))
    dims = {"dropout": params.dropout}
    model = BiLstmCrf(len(vocab), len(chars), len(tags), **dims).to(device)
    reporter.line(
        f"model: char-CNN (25-dim chars, 50 filters) + word embeddings (100-dim, {len(vocab)} words) + "
        f"casing (10-dim) -> BiLSTM 2x200 -> CRF over {len(tags)} BIO tags; "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters"
    )
    return BiLstmTagger(model, vocab, chars, tags, device, dims)


def loss(tagger: BiLstmTagger, batch: list) -> torch.Tensor:
    index = {t: i for i, t in enumerate(tagger.tags)}
    words, chars, case, mask = tagger.tensors([w for w, _ in batch])
    target = torch.zeros(mask.shape, dtype=torch.long)
    for i, (_, tags) in enumerate(batch):
        target[i, : len(tags)] = torch.tensor([index[t] for t in tags], dtype=torch.long)
    return tagger.model.crf.nll(tagger.model.emissions(words, chars, case), target.to(tagger.device), mask)
