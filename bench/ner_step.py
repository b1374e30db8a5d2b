"""Where a step of the `minilm` NER training spends its time: forward, backward, gradient clipping
and AdamW, each the mean over steps of the service's batches of CoNLL-2003 training sentences
(the service's model, casing, learning-rate groups and batching; words as the service's tokenizer
splits the task texts). `--frozen` also times the same steps with the word-piece matrix frozen
(not trained, so not in AdamW).

    .venv/bin/python bench/ner_step.py [--steps 50] [--frozen] [--threads 2]

The first 10 steps warm up and are not counted. About a minute a model on 2 cores.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from common import SHARED
from ner_vs_spacy import LABELS, read_conll, to_row

from trainers.loop import batches, parameter_groups
from trainers.ner_encoder import build, loss, lr_scales, training_items
from trainers.recipes import recipe
from trainers.reporting import Reporter
from trainers.spec import TrainParams
from trainers.text import tokenize

WARM_UP = 10
PHASES = ("forward", "backward", "clip", "AdamW")


def sentences(limit: int) -> list[list[str]]:
    """The first training sentences' words, as the service tokenizes their task texts."""
    documents = read_conll(SHARED / "conll2003" / "eng.train.conll")
    rows = [to_row(0, "train", s) for document in documents for s in document][:limit]
    return [[word for word, _, _ in tokenize(row["text"])] for row in rows]


def time_steps(word_lists: list[list[str]], steps: int, frozen: bool) -> dict[str, float]:
    """Mean milliseconds per phase over `steps` steps after the warm-up."""
    tags = ["O"] + [f"{kind}-{label}" for label in LABELS for kind in "BI"]
    params = TrainParams(**recipe("ner", "minilm"))
    tagger = build(tags, params, torch.device("cpu"), Reporter())  # no log, no listener
    model = tagger.model
    if frozen:
        model.base_model.embeddings.word_embeddings.weight.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameter_groups(model, lr_scales(tagger)), lr=params.learning_rate)
    items = training_items(tagger, word_lists, [["O"] * len(words) for words in word_lists])
    spent = dict.fromkeys(PHASES, 0.0)
    model.train()
    batch_iter = batches(items, params.batch_size, random.Random(params.seed), lambda item: len(item[0]))
    for i, batch in zip(range(WARM_UP + steps), batch_iter):
        marks = [time.perf_counter()]
        optimizer.zero_grad()
        value = loss(tagger, batch)
        marks.append(time.perf_counter())
        value.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        if i >= WARM_UP:
            for phase, start, end in zip(PHASES, marks, marks[1:]):
                spent[phase] += (end - start) * 1000 / steps
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--frozen", action="store_true", help="also time the steps with the word-piece matrix frozen")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    word_lists = sentences(4000)
    print(f"{'model':<28}" + "".join(f"{phase:>16}" for phase in PHASES) + f"{'step':>10}")
    for frozen in (False, True) if args.frozen else (False,):
        spent = time_steps(word_lists, args.steps, frozen)
        total = sum(spent.values())
        name = "word pieces frozen" if frozen else "the service's (all trained)"
        cells = "".join(f"{f'{ms:.0f} ms ({ms / total:.0%})':>16}" for ms in spent.values())
        print(f"{name:<28}{cells}{f'{total:.0f} ms':>10}", flush=True)
    print(
        f"\nbatches of {TrainParams().batch_size}, the mean of {args.steps} steps after {WARM_UP}; {args.threads} threads"
    )


if __name__ == "__main__":
    main()
