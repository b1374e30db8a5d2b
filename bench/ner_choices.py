"""What the NER training's choices on validation are worth: trains CoNLL-2003 as the service does
(`trainers.run`, the `ner` + `minilm` defaults, the training sentences with the service's own
validation share, `--seed`), then scores every candidate it chooses between (the last epoch's
weights and the averaged weights of the last steps, each with every Viterbi prior weight; with
`--windows`, averages over longer final shares of the same run too, which the trainer does not
choose between) on that validation share, on the official dev set (articles no training sentence comes from) and on the
test set. Prints the table and writes it as JSON next to the run.

    .venv/bin/python bench/ner_choices.py [--seed 0] [--windows 0.5 0.75] [--quick]

One run takes as long as the service's training (about 20 minutes on 2 cores); `--quick` checks the script in a
minute (500 sentences of each part, 1 epoch).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch
from common import SHARED, write_snapshot
from ner_vs_spacy import LABELS, read_conll, to_row

from trainers import dataset, ner, ner_encoder
from trainers.loop import WeightAverage, _same
from trainers.metrics import ner_scores
from trainers.run import run
from trainers.text import spans_from_bio

DATA = SHARED / "conll2003"


def rows(parts: list[tuple[str, str]], sentences: int | None = None) -> list[dict]:
    """The parts' sentences as snapshot rows (`sentences`: the first so many of each part)."""
    out = []
    for split, name in parts:
        found = [sentence for document in read_conll(DATA / name) for sentence in document][:sentences]
        out += [to_row(len(out) + 1, split, sentence) for sentence in found]
    return out


def f1(tagger, docs: list, weight: float, log_probs) -> float:
    tags = tagger.decode(log_probs, weight)
    predicted = [spans_from_bio(d.words, t) for d, t in zip(docs, tags)]
    return ner_scores([d.spans for d in docs], predicted, [d.tags for d in docs], tags, LABELS)["entity"]["micro"]["f1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--windows", type=float, nargs="*", default=[], help="also average these final shares of the steps"
    )
    parser.add_argument("--quick", action="store_true", help="500 sentences of each part, 1 epoch: a check")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labtrain-ner-choices-"))
    first = 500 if args.quick else None
    write_snapshot(work / "snapshot.parquet", rows([("train", "eng.train.conll"), ("test", "eng.test.conll")], first))
    write_snapshot(work / "dev.parquet", rows([("test", "eng.dev.conll")], first))
    weights, table = {}, {}

    # Instruments the trainer as it runs: the weights of the last epoch and of the average, then
    # (after the trainer's own choice of decoding) every candidate on every part.
    train_while_improving, validate_average, choose_decoding, step_average = (
        ner.train_while_improving,
        WeightAverage.validate,
        ner.choose_decoding,
        WeightAverage.step,
    )
    extra: dict[str, WeightAverage] = {}  # the --windows averages, stepped with the trainer's own

    def step(self, done, total):
        step_average(self, done, total)
        for share in args.windows:
            key = f"averaged {share:g}"
            extra.setdefault(key, WeightAverage(self.model, share * total))
            step_average(extra[key], done, total)

    def epochs(model, *rest, **named):
        for result in train_while_improving(model, *rest, **named):
            weights["last epoch"] = copy.deepcopy(model.state_dict())
            yield result

    def average(self, validate):
        scores, mean = validate_average(self, validate)
        weights["averaged"] = copy.deepcopy(mean)
        return scores, mean

    def decoding(tagger, train_tags, validation, labels, reporter, box_lists=None):
        choose_decoding(tagger, train_tags, validation, labels, reporter, box_lists)
        weights.update({key: average.mean for key, average in extra.items() if average.count})
        chosen = copy.deepcopy(tagger.model.state_dict())
        table["chosen"] = {"prior weight": tagger.prior_weight}
        parts = {
            "validation": validation,
            "dev": ner.prepare(dataset.read_documents(work / "dev.parquet"), labels, reporter),
            "test": ner.prepare(
                [d for d in dataset.read_documents(work / "snapshot.parquet") if d.split == "test"], labels, reporter
            ),
        }
        for candidate, state in weights.items():
            tagger.model.load_state_dict(state)
            tagger.model.eval()
            for part, docs in parts.items():
                with torch.no_grad():
                    log_probs = tagger.word_log_probs([[w for w, _, _ in d.words] for d in docs])
                for weight in ner_encoder.PRIOR_WEIGHTS:
                    table.setdefault(candidate, {})[f"{part} {weight:g}"] = f1(tagger, docs, weight, log_probs)
            if _same(state, chosen):
                table["chosen"]["weights"] = candidate
        tagger.model.load_state_dict(chosen)

    ner.train_while_improving, WeightAverage.validate, ner.choose_decoding = epochs, average, decoding
    WeightAverage.step = step
    started = time.monotonic()
    run(
        {
            "type": "ner",
            "snapshot": str(work / "snapshot.parquet"),
            "labels": LABELS,
            "embeddings": "minilm",
            "params": {"seed": args.seed, **({"epochs": 1} if args.quick else {})},
            "output_dir": str(work / "out"),
        }
    )
    (work / "choices.json").write_text(json.dumps(table, indent=1))
    print(f"\nseed {args.seed}; chosen: {table['chosen']}; {time.monotonic() - started:.0f} s")
    print(f"{'weights':<14}{'prior':>6}{'validation':>12}{'dev':>8}{'test':>8}")
    for candidate in weights:
        for weight in ner_encoder.PRIOR_WEIGHTS:
            scores = [table[candidate][f"{part} {weight:g}"] for part in ("validation", "dev", "test")]
            print(f"{candidate:<14}{weight:>6g}" + "".join(f"{s:>{w}.4f}" for s, w in zip(scores, (12, 8, 8))))
    print(f"\nlog and JSON in {work}")


if __name__ == "__main__":
    main()
