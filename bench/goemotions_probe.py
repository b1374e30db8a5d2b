"""Why the fine-tuned [CLS] head failed on GoEmotions: how much each pooling of the frozen packaged
encoder (all-MiniLM-L6-v2) already tells the 28 emotions apart. One logistic layer per pooling
(full-batch Adam, 200 steps, standardised features) on the 10k training sample; per label the
threshold with the best F1 on dev, the same for every pooling (optimistic, but alike for all).

    .venv/bin/python bench/goemotions_probe.py

Prints dev macro and micro F1 for the [CLS] token, BERT's pooler over it (what
AutoModelForSequenceClassification reads) and the normalised mean of the tokens (what the encoder
was trained to give).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from common import SHARED

from trainers.embeddings import minilm_path

POOLINGS = ("cls", "pooler", "mean")


def read(file: str, names: list[str]) -> tuple[list[str], np.ndarray]:
    texts, gold = [], []
    for line in (SHARED / "goemotions" / file).read_text().splitlines():
        text, ids, _ = line.split("\t")
        row = np.zeros(len(names))
        row[[int(i) for i in ids.split(",")]] = 1
        texts.append(text)
        gold.append(row)
    return texts, np.array(gold)


def features(texts: list[str], tokenizer, encoder) -> dict[str, np.ndarray]:
    out = {k: np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32) for k in POOLINGS}
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            idx = order[start : start + 64]
            enc = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
            o = encoder(**enc)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            mean = torch.nn.functional.normalize((o.last_hidden_state * mask).sum(1) / mask.sum(1), dim=-1)
            for name, value in (("cls", o.last_hidden_state[:, 0]), ("pooler", o.pooler_output), ("mean", mean)):
                out[name][idx] = value.numpy()
    return out


def probe(train: np.ndarray, gold: np.ndarray, dev: np.ndarray, steps: int = 200) -> np.ndarray:
    a, b = torch.tensor(train), torch.tensor(dev)
    mu, sd = a.mean(0), a.std(0) + 1e-6
    a, b = (a - mu) / sd, (b - mu) / sd
    layer = torch.nn.Linear(a.shape[1], gold.shape[1])
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2, weight_decay=1e-4)
    target = torch.tensor(gold, dtype=torch.float32)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(layer(a), target).backward()
        optimizer.step()
    return torch.sigmoid(layer(b)).detach().numpy()


def best_f1(probs: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """Macro and micro F1 with each label's best threshold (0.02 to 0.90)."""
    macro, counts = [], np.zeros(3)
    for j in range(gold.shape[1]):
        yes = gold[:, j] == 1
        best = (0.0, 0, 0, int(yes.sum()))
        for t in np.arange(0.02, 0.92, 0.02):
            said = probs[:, j] >= t
            tp, fp, fn = int((said & yes).sum()), int((said & ~yes).sum()), int((~said & yes).sum())
            f1 = 2 * tp / max(1, 2 * tp + fp + fn)
            if f1 > best[0]:
                best = (f1, tp, fp, fn)
        macro.append(best[0])
        counts += best[1:]
    tp, fp, fn = counts
    return float(np.mean(macro)), float(2 * tp / (2 * tp + fp + fn))


def main() -> None:
    from transformers import AutoModel, AutoTokenizer

    names = (SHARED / "goemotions" / "emotions.txt").read_text().split()
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    encoder = AutoModel.from_pretrained(minilm_path()).eval()
    started = time.monotonic()
    train_texts, train_gold = read("train_sample10k.tsv", names)
    dev_texts, dev_gold = read("dev.tsv", names)
    train, dev = features(train_texts, tokenizer, encoder), features(dev_texts, tokenizer, encoder)
    print(f"features of {len(train_texts)} + {len(dev_texts)} texts in {time.monotonic() - started:.0f} s\n")
    print(f"{'pooling':<8}{'dev macro F1':>14}{'dev micro F1':>14}")
    for name in POOLINGS:
        macro, micro = best_f1(probe(train[name], train_gold, dev[name]), dev_gold)
        print(f"{name:<8}{macro:14.3f}{micro:14.3f}")


if __name__ == "__main__":
    main()
