"""An example custom NER training script for labtrain (upload it with
`labtrain script upload PROJECT trainers/examples/minilm_token_classifier.py`).

It follows the contract of `trainers/custom.py`: it reads `train.conll`, `dev.conll` and
`params.json`, fine-tunes the packaged all-MiniLM-L6-v2 as a plain transformers token
classifier (no casing features, no Viterbi: a simpler recipe than labtrain's own), and writes
the model folder with `save_pretrained`, so that labtrain can score it on the test part and
pre-annotate with it. It prints one line per epoch and `LABTRAIN_PROGRESS` lines."""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

WORDS_PER_PIECE = 64  # long documents are cut into pieces of this many words


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    docs, words, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                docs.append((words, tags))
            words, tags = [], []
            continue
        word, tag = line.split("\t")
        words.append(word)
        tags.append(tag)
    if words:
        docs.append((words, tags))
    return [
        (w[i : i + WORDS_PER_PIECE], t[i : i + WORDS_PER_PIECE])
        for w, t in docs
        for i in range(0, len(w), WORDS_PER_PIECE)
    ]


def encode(tokenizer, batch, index: dict, max_length: int):
    enc = tokenizer(
        [words for words, _ in batch],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    )
    labels = torch.full(enc["input_ids"].shape, -100)
    for row, (_, tags) in enumerate(batch):
        previous = None
        for pos, wid in enumerate(enc.word_ids(row)):
            if wid is not None and wid != previous:
                labels[row, pos] = index[tags[wid]]
            previous = wid
    return enc, labels


def dev_accuracy(model, tokenizer, dev, index: dict, max_length: int) -> float | None:
    """Share of dev words (first word pieces) whose tag the model gets right."""
    if not dev:
        return None
    model.eval()
    right = total = 0
    with torch.no_grad():
        for i in range(0, len(dev), 32):
            enc, labels = encode(tokenizer, dev[i : i + 32], index, max_length)
            predicted = model(**enc).logits.argmax(-1)
            mask = labels != -100
            right += int((predicted[mask] == labels[mask]).sum())
            total += int(mask.sum())
    model.train()
    return right / max(1, total)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    params = json.loads(args.params.read_text())
    tags, seed = params["tags"], params["seed"]
    random.seed(seed)
    torch.manual_seed(seed)
    index = {t: i for i, t in enumerate(tags)}
    tokenizer = AutoTokenizer.from_pretrained(params["minilm"])
    model = AutoModelForTokenClassification.from_pretrained(
        params["minilm"], num_labels=len(tags), id2label=dict(enumerate(tags)), label2id=index
    )
    train, dev = read_conll(args.data / "train.conll"), read_conll(args.data / "dev.conll")
    print(f"{len(train)} training pieces, {len(dev)} dev pieces, tags {tags}", flush=True)
    lr, epochs, batch_size = params["learning_rate"] or 5e-5, params["epochs"], params["batch_size"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    steps, done = epochs * ((len(train) + batch_size - 1) // batch_size), 0
    model.train()
    for epoch in range(1, epochs + 1):
        started, total = time.monotonic(), 0.0
        random.shuffle(train)
        for i in range(0, len(train), batch_size):
            enc, labels = encode(tokenizer, train[i : i + batch_size], index, params["max_length"])
            loss = model(**enc, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            total += loss.item()
            done += 1
            print(f"LABTRAIN_PROGRESS {100 * done / steps:.1f}", flush=True)
        accuracy = dev_accuracy(model, tokenizer, dev, index, params["max_length"])
        print(
            f"epoch {epoch}: loss {total:.3f}, dev word accuracy "
            f"{'-' if accuracy is None else f'{accuracy:.4f}'}, {time.monotonic() - started:.1f} s",
            flush=True,
        )
    model.save_pretrained(args.output)
    tokenizer.save_pretrained(args.output)
    (args.output / "metrics.json").write_text(json.dumps({"dev_word_accuracy": accuracy, "epochs": epochs}))


if __name__ == "__main__":
    main()
