"""Trainers on tiny separable projects: real MiniLM weights, real BiLSTM-CRF, real snapshots.
They assert that learning happened (F1 on held-out tasks), never a fixed score."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import HANG_S
from tests.trainer_data import CONFIG, MULTI_CONFIG, build_snapshot, multi_tasks, toy_tasks
from trainers import embeddings
from trainers.dataset import TrainingDataError
from trainers.metrics import ner_scores
from trainers.predict import load
from trainers.run import run
from trainers.spec import SpecError, TrainSpec
from trainers.text import Span, bio_tags, spans_from_bio, tokenize

FAST = {"epochs": 4, "learning_rate": 1e-4, "batch_size": 4, "few_shot": "off"}  # the fine-tuned head


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return build_snapshot(tmp_path_factory.mktemp("toy"), CONFIG, toy_tasks(60))


def train(tmp_path, snapshot, training_type, labels, embeddings_name="minilm", params=FAST, **extra):
    return run(
        {
            "type": training_type,
            "snapshot": snapshot,
            "output_dir": str(tmp_path / "out"),
            "labels": labels,
            "embeddings": embeddings_name,
            "params": params,
            **extra,
        }
    )


def test_tokenizer_keeps_offsets_in_european_languages():
    text = "Zürich's Straße, São Paulo e Ålborg; București și Ærø."
    words = tokenize(text)
    assert all(text[s:e] == w for w, s, e in words)
    assert [w for w, _, _ in words][:5] == ["Zürich's", "Straße", ",", "São", "Paulo"]
    assert "București" in [w for w, _, _ in words]


def test_bio_tags_and_conll_chunks_round_trip():
    text = "Rita Levi lives in New York ."
    words = tokenize(text)
    spans = [Span(0, 9, "PER"), Span(19, 27, "LOC")]
    tags = bio_tags(words, spans)
    assert tags == ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"]
    assert spans_from_bio(words, tags) == spans
    assert spans_from_bio(words, ["I-PER", "I-PER", "O", "O", "I-LOC", "B-LOC", "O"]) == [
        Span(0, 9, "PER"),
        Span(19, 22, "LOC"),
        Span(23, 27, "LOC"),
    ]


def test_entity_scores_need_exact_span_and_type():
    gold = [[Span(0, 4, "PER"), Span(14, 19, "LOC")]]
    predicted = [[Span(0, 4, "PER"), Span(13, 19, "LOC"), Span(20, 25, "PER")]]
    scores = ner_scores(gold, predicted, [["B-PER", "O"]], [["B-PER", "B-PER"]], ["PER", "LOC"])
    entity = scores["entity"]
    assert entity["micro"]["precision"] == pytest.approx(1 / 3, abs=1e-3)
    assert entity["micro"]["recall"] == 0.5
    assert entity["per_label"]["LOC"]["f1"] == 0.0
    assert scores["token"]["accuracy"] == 0.5


def test_minilm_ner_learns_and_loads_with_transformers(tmp_path, toy):
    result = train(tmp_path, toy["ner"], "ner", ["PER", "LOC"])
    assert result.metrics["entity"]["micro"]["f1"] > 0.9
    assert set(result.metrics["token"]) >= {"per_label", "micro", "macro", "accuracy"}
    out = tmp_path / "out"
    info = json.loads((out / "labtrain.json").read_text())
    assert info["type"] == "ner" and info["labels"] == ["PER", "LOC"] and "torch" in info["versions"]
    log = (out / "training.log").read_text()
    assert "E       LOSS       P       R      F1  SECONDS" in log
    assert "TEST ENTITY" in log and "micro F1" in log
    assert "CRF" not in log  # off by default: the transitions counted on the training data
    assert "start" not in json.loads((out / "model" / "transitions.json").read_text())
    from transformers import pipeline

    found = pipeline("token-classification", model=str(out / "model"), aggregation_strategy="simple")(
        "Greta lives in Oslo and travels often ."
    )
    assert {(e["word"], e["entity_group"]) for e in found} == {("greta", "PER"), ("oslo", "LOC")}
    (first,) = load(out).predict(["Hugo has fever in Rome ."])
    assert {(r["value"]["text"], r["value"]["labels"][0]) for r in first} == {("Hugo", "PER"), ("Rome", "LOC")}
    assert all(r["from_name"] == "label" and r["to_name"] == "text" and r["type"] == "labels" for r in first)


def test_bilstm_crf_ner_learns_and_reloads(tmp_path, toy):
    result = train(
        tmp_path,
        toy["ner"],
        "ner",
        ["PER", "LOC"],
        "bilstm",
        {"epochs": 8, "learning_rate": 1e-2, "batch_size": 4, "dropout": 0.2, "average_last": 0.5},
    )
    assert result.metrics["entity"]["micro"]["f1"] > 0.9
    log = (tmp_path / "out" / "training.log").read_text()
    assert "BiLSTM" in log and "averaged weights of the last steps: F1" in log
    assert result.metrics["epochs"][-1]["averaged"]["f1"] > 0.9
    (first,) = load(tmp_path / "out").predict(["Ines lives in Dublin and travels often ."])
    assert [r["value"]["text"] for r in first] == ["Ines", "Dublin"]


@pytest.mark.parametrize(
    ("last", "averaged", "kept"),
    [
        (0.95, 0.92, "average"),  # the last epoch validates better than the average: the average still
        (0.95, 0.85, "epoch 3"),  # an earlier epoch (2) validates better than the average: the best epoch
        (0.80, 0.85, "epoch 2"),
    ],
)
def test_the_weight_average_is_kept_unless_an_earlier_epoch_validates_better(last, averaged, kept):
    from trainers.loop import epoch_note, train_while_improving
    from trainers.spec import TrainParams

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = [(torch.randn(3), float(i % 2)) for i in range(100)]  # 25 steps an epoch; the average: steps 40 and 60
    scores = iter([0.5, 0.9, last, averaged])  # epochs 1, 2, 3, then the average

    def step(batch):
        x = torch.stack([x for x, _ in batch])
        y = torch.tensor([y for _, y in batch])
        return torch.nn.functional.mse_loss(model(x).squeeze(1), y)

    params = TrainParams(epochs=3, batch_size=4, learning_rate=0.1, average_last=0.5, seed=0)
    weights, results = {}, []
    for result in train_while_improving(model, data, params, 0.1, step, lambda: {"f1": next(scores)}):
        weights[f"epoch {result.epoch}"] = {k: v.clone() for k, v in model.state_dict().items()}
        results.append(result)
    final = model.state_dict()
    same = {name: all(torch.equal(final[k], w[k]) for k in final) for name, w in weights.items()}
    assert results[-1].averaged == {"f1": averaged}
    assert results[-1].average_kept == (kept == "average")
    assert same == {"epoch 1": False, "epoch 2": kept == "epoch 2", "epoch 3": kept == "epoch 3"}
    note = epoch_note(results[-1], 0)
    assert note.endswith("kept" if kept == "average" else "not kept (an earlier epoch's weights validate better)")


def test_single_choice_classification_learns_with_a_confusion_matrix(tmp_path, toy):
    result = train(
        tmp_path, toy["classification"], "classification", ["travel", "health"], params={**FAST, "epochs": 3}
    )
    assert result.metrics["macro"]["f1"] > 0.9
    confusion = json.loads((tmp_path / "out" / "confusion_matrix.json").read_text())
    assert confusion["labels"] == ["travel", "health"]
    assert sum(map(sum, confusion["matrix"])) == result.metrics["micro"]["support"]
    assert (tmp_path / "out" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    from transformers import pipeline

    assert (
        pipeline("text-classification", model=str(tmp_path / "out" / "model"))("Jonas has fever in Paris .")[0]["label"]
        == "health"
    )
    assert load(tmp_path / "out").predict(["Anna lives in Rome and travels often ."]) == [
        [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["travel"]}}]
    ]


def test_multiple_choice_classification_learns_with_tuned_thresholds(tmp_path):
    """The mean-pooled encoder and a sigmoid head per label, trained end to end: the folder loads
    with sentence-transformers and joblib, and their probabilities are the trainer's."""
    import joblib
    from sentence_transformers import SentenceTransformer

    snapshot = build_snapshot(tmp_path / "home", MULTI_CONFIG, multi_tasks(60))["classification"]
    result = train(
        tmp_path,
        snapshot,
        "classification",
        ["respiratory", "skin"],
        multiple=True,
        params={**FAST, "epochs": 5, "validation_fraction": 0.2},
        from_name="symptoms",
    )
    assert result.metrics["micro"]["f1"] > 0.9
    info = json.loads((tmp_path / "out" / "labtrain.json").read_text())
    assert set(info["thresholds"]) == {"respiratory", "skin"}
    assert all(0 < t < 1 for t in info["thresholds"].values())
    assert info["head"] == "mean-pooled"
    text = "Elena reports a cough and a rash since May ."
    predictor = load(tmp_path / "out")
    (both,) = predictor.predict([text])
    assert both[0]["from_name"] == "symptoms" and sorted(both[0]["value"]["choices"]) == ["respiratory", "skin"]
    folder = tmp_path / "out" / "model"
    theirs = joblib.load(folder / "model_head.pkl").predict_proba(SentenceTransformer(str(folder)).encode([text]))
    assert theirs.shape == (1, 2) and all(theirs[0] >= list(info["thresholds"].values()))
    assert abs(theirs - predictor.model.probabilities([text]).numpy()).max() < 1e-4


def test_assertion_status_learns_from_the_marked_span(tmp_path, toy):
    result = train(tmp_path, toy["assertion"], "assertion", ["Present", "Absent"], params={**FAST, "epochs": 6})
    assert result.metrics["micro"]["f1"] > 0.9
    text = "Boris has no fever in Oslo ."
    (first,) = load(tmp_path / "out").predict([{"text": text, "entities": [{"start": 13, "end": 18}]}])
    assert first[0]["value"] == {"start": 13, "end": 18, "text": "fever", "labels": ["Absent"]}


def test_relation_learns_which_entity_pairs_are_related(tmp_path, toy):
    result = train(tmp_path, toy["relation"], "relation", ["lives_in"], params={**FAST, "epochs": 3})
    assert result.metrics["per_label"]["lives_in"]["f1"] > 0.9
    assert result.metrics["confusion_matrix"]["labels"] == ["lives_in", "no_relation"]
    text = "Carla lives in Vienna and travels often ."
    entities = [{"id": "a", "start": 0, "end": 5, "label": "PER"}, {"id": "b", "start": 15, "end": 21, "label": "LOC"}]
    (first,) = load(tmp_path / "out").predict([{"text": text, "entities": entities}])
    assert first == [{"from_id": "a", "to_id": "b", "type": "relation", "direction": "right", "labels": ["lives_in"]}]


def test_trainer_runs_as_a_command_without_ray(tmp_path, toy):
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "type": "ner",
                "snapshot": toy["ner"],
                "output_dir": str(tmp_path / "out"),
                "labels": ["PER", "LOC"],
                "embeddings": "bilstm",
                "params": {"epochs": 2, "learning_rate": 1e-2, "batch_size": 4},
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "trainers.run", str(spec)], capture_output=True, text=True, timeout=HANG_S
    )
    assert done.returncode == 0, done.stderr
    assert "labtrain training: ner with bilstm embeddings" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1])["model_dir"] == str(tmp_path / "out" / "model")
    imports = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, trainers.run; print('ray' in sys.modules, 'duckdb' in sys.modules, 'fastapi' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert imports.stdout.split() == ["False", "False", "False"]  # trainers need neither Ray, DuckDB nor HTTP
    bad = subprocess.run(
        [sys.executable, "-m", "trainers.run", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert bad.returncode == 1


def test_reporter_streams_log_lines_and_progress_to_100(tmp_path, toy):
    events = []
    run(
        {
            "type": "ner",
            "snapshot": toy["ner"],
            "output_dir": str(tmp_path / "out"),
            "labels": ["PER", "LOC"],
            "embeddings": "bilstm",
            "params": {"epochs": 3, "learning_rate": 1e-2, "batch_size": 8},
        },
        listeners=[events.append],
    )
    progress = [e["progress"] for e in events if e["kind"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 100
    assert {e["epoch"] for e in events if e["kind"] == "progress" and e["epoch"]} == {1, 2, 3}
    lines = [e["line"] for e in events if e["kind"] == "log"]
    assert lines == (tmp_path / "out" / "training.log").read_text().splitlines()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_request_falls_back_to_cpu_with_a_log_line(tmp_path, toy):
    train(tmp_path, toy["ner"], "ner", ["PER", "LOC"], "bilstm", {"epochs": 1, "learning_rate": 1e-2}, device="cuda")
    assert (
        "cuda was asked for but no GPU is present; training on cpu" in (tmp_path / "out" / "training.log").read_text()
    )


@pytest.mark.parametrize(
    "change, fault",
    [
        ({"type": "pos"}, "type 'pos' is not one of"),
        ({"embeddings": "bilstm", "type": "classification"}, "embeddings 'bilstm' cannot train 'classification'"),
        ({"snapshot": "/nope.parquet"}, "snapshot '/nope.parquet' does not exist"),
        ({"labels": []}, "labels must be a non-empty list"),
        ({"params": {"dropout": 1.5}}, "parameter dropout=1.5 must be a number in [0, 1)"),
        ({"params": {"epochs": 0}}, "parameter epochs=0 must be an integer >= 1"),
        ({"params": {"lr": 0.1}}, "unknown parameter(s): lr"),
        ({"params": {"average_last": 1.0}}, "parameter average_last=1.0 must be a number in [0, 1)"),
        ({"device": "tpu"}, "device 'tpu' must be 'cpu' or 'cuda'"),
        ({"colour": "red"}, "unknown spec field(s): colour"),
    ],
)
def test_bad_specs_name_the_field_at_fault(tmp_path, toy, change, fault):
    spec = {"type": "ner", "snapshot": toy["ner"], "output_dir": str(tmp_path), "labels": ["PER"], **change}
    with pytest.raises(SpecError) as error:
        TrainSpec.from_dict(spec)
    assert fault in str(error.value)


def test_no_training_examples_names_the_type_and_labels(tmp_path, toy):
    with pytest.raises(TrainingDataError, match=r"no training examples for assertion.*\['Hypothetical'\]"):
        train(tmp_path, toy["assertion"], "assertion", ["Hypothetical"])
    assert "training failed: TrainingDataError" in (tmp_path / "out" / "training.log").read_text()


def test_available_embeddings_list_types_languages_and_sizes():
    options = {e["name"]: e for e in embeddings.available()}
    assert set(options) == {"minilm", "bilstm", "minilm_words"}
    assert options["minilm_words"]["backend"] == "sparknlp" and options["minilm_words"]["dimensions"] == 300
    assert embeddings.embeddings_for("ner", "sparknlp") == ["minilm_words"]
    assert embeddings.embeddings_for("assertion", "sparknlp") == []
    assert options["bilstm"]["languages"] == ("en", "de", "es", "pt", "it", "da", "ro")
    assert options["minilm"]["dimensions"] == 384 and options["minilm"]["size_mb"] > 0
    assert embeddings.embeddings_for("classification") == ["minilm"]
    assert (embeddings.minilm_path() / "model.safetensors").is_file()


def test_early_stopping_is_logged_and_keeps_the_best_epoch(tmp_path, toy):
    result = train(
        tmp_path,
        toy["ner"],
        "ner",
        ["PER", "LOC"],
        "bilstm",
        {
            "epochs": 30,
            "learning_rate": 1e-2,
            "batch_size": 4,
            "early_stopping_patience": 2,
            "validation_fraction": 0.3,
        },
    )
    assert len(result.metrics["epochs"]) < 30
    assert (
        "early stopping: no improvement on validation for 2 epochs" in (tmp_path / "out" / "training.log").read_text()
    )


def test_the_crf_loss_is_the_likelihood_over_every_sequence_bio_allows():
    import itertools

    from trainers.ner_encoder import Crf, bio_constraints

    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    torch.manual_seed(0)
    crf = Crf(tags)
    for p in crf.parameters():
        p.data.normal_()
    emissions = torch.randn(2, 3, len(tags))
    gold = torch.tensor([[1, 2, 0], [3, 0, 0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])  # the second row has 2 words
    between, start = bio_constraints(tags)

    def score(row, seq):
        total = crf.start[seq[0]] + start[seq[0]] + crf.end[seq[-1]]
        total = total + sum(emissions[row, t, k] for t, k in enumerate(seq))
        return total + sum(crf.transitions[a, b] + between[a, b] for a, b in zip(seq, seq[1:]))

    expected = 0.0
    for row, length in ((0, 3), (1, 2)):
        allowed = [
            seq
            for seq in itertools.product(range(len(tags)), repeat=length)
            if all(between[a, b] == 0 for a, b in zip(seq, seq[1:])) and start[seq[0]] == 0
        ]
        log_z = torch.logsumexp(torch.stack([score(row, seq) for seq in allowed]), 0)
        expected = expected + log_z - score(row, gold[row, :length].tolist())
    assert torch.allclose(crf.nll(emissions, gold, mask), expected, atol=1e-4)


def test_minilm_ner_with_a_crf_learns_and_saves_a_plain_model(tmp_path, toy):
    result = train(tmp_path, toy["ner"], "ner", ["PER", "LOC"], params=FAST | {"crf": True})
    assert result.metrics["entity"]["micro"]["f1"] > 0.9
    out = tmp_path / "out"
    log = (out / "training.log").read_text()
    assert "+ CRF (learned transitions)" in log and "the CRF's learned transitions" in log
    saved = json.loads((out / "model" / "transitions.json").read_text())
    assert len(saved["start"]) == len(saved["end"]) == 5 and len(saved["log_prior"]) == 5
    from safetensors import safe_open

    with safe_open(str(out / "model" / "model.safetensors"), "pt") as weights:
        assert not [k for k in weights.keys() if "crf" in k]
    (first,) = load(out).predict(["Hugo has fever in Rome ."])
    assert {(r["value"]["text"], r["value"]["labels"][0]) for r in first} == {("Hugo", "PER"), ("Rome", "LOC")}


def test_viterbi_decoding_never_returns_a_sequence_bio_forbids():
    from trainers.ner_encoder import bio_constraints, transition_prior, viterbi

    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    between, start = bio_constraints(tags)
    # the argmax alone would say O, I-PER, I-LOC: two chunks that BIO cannot produce
    log_probs = torch.log(
        torch.tensor([[0.6, 0.3, 0.05, 0.03, 0.02], [0.1, 0.3, 0.5, 0.05, 0.05], [0.1, 0.1, 0.35, 0.05, 0.4]])
    )
    assert [tags[i] for i in log_probs.argmax(-1)] == ["O", "I-PER", "I-LOC"]
    assert [tags[i] for i in viterbi(log_probs, between, start)] == ["O", "B-PER", "I-PER"]
    prior = transition_prior(tags, [["B-PER", "I-PER", "O"], ["O", "B-LOC", "O"]])
    assert prior[1, 2] > prior[1, 4]  # B-PER is followed by I-PER, never by I-LOC


def test_a_snapshot_that_is_not_parquet_fails_as_corrupt(tmp_path):
    from trainers.dataset import TrainingDataError, read_documents
    from trainers.run import failure_reason

    broken = tmp_path / "ner.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(TrainingDataError) as error:
        read_documents(broken)
    assert failure_reason(error.value).startswith(f"corrupt snapshot: the snapshot {broken} cannot be read")


def test_a_run_resumed_from_an_epoch_checkpoint_ends_as_the_run_that_was_never_stopped(toy, tmp_path):
    """What a retry on another node relies on: the loop's whole state (weights, optimizer, random
    generators, best weights) is in the checkpoint, so going on from epoch 2 of 4 is the same run."""
    params = {"epochs": 4, "learning_rate": 1e-2, "batch_size": 4, "dropout": 0.3}
    kept = {}

    def keep(event):
        if event["kind"] == "checkpoint":
            copy = tmp_path / f"epoch-{event['epoch']}"
            shutil.copytree(event["path"], copy)
            kept[event["epoch"]] = copy

    whole = run(
        {
            "type": "ner",
            "snapshot": toy["ner"],
            "output_dir": str(tmp_path / "whole"),
            "labels": ["PER", "LOC"],
            "embeddings": "bilstm",
            "params": params,
            "checkpoint": {"folder": str(tmp_path / "saving")},
        },
        [keep],
    )
    assert sorted(kept) == [1, 2, 3]  # every epoch but the last, whose state is the model itself
    resumed = run(
        {
            "type": "ner",
            "snapshot": toy["ner"],
            "output_dir": str(tmp_path / "resumed"),
            "labels": ["PER", "LOC"],
            "embeddings": "bilstm",
            "params": params,
            "checkpoint": {"folder": str(tmp_path / "saving-again"), "resume": str(kept[2])},
        }
    )
    assert [e["epoch"] for e in resumed.metrics["epochs"]] == [3, 4]
    assert [e["loss"] for e in resumed.metrics["epochs"]] == [e["loss"] for e in whole.metrics["epochs"][2:]]
    assert resumed.metrics["entity"]["micro"] == whole.metrics["entity"]["micro"]
    mine, theirs = (torch.load(Path(r.model_dir) / "model.pt", weights_only=False) for r in (resumed, whole))
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("kind", ["single", pytest.param("multiple", marks=pytest.mark.slow)])  # fast tier: one
def test_few_examples_take_the_few_shot_path_and_the_folder_loads_as_a_setfit_model(tmp_path, toy, kind):
    """Below trainers.recipes.FEW_SHOT_BELOW examples of its median label, classification takes
    SetFit's path by default; the folder loads with sentence-transformers and its head with joblib."""
    import joblib
    from sentence_transformers import SentenceTransformer

    if kind == "single":
        snapshot, labels, extra, text = toy["classification"], ["travel", "health"], {}, "Jonas has fever in Paris ."
    else:
        snapshot = build_snapshot(tmp_path / "home", MULTI_CONFIG, multi_tasks(60))["classification"]
        labels, extra = ["respiratory", "skin"], {"multiple": True, "from_name": "symptoms"}
        text = "Elena reports a cough and a rash since May ."
    lines = []
    result = run(
        {
            "type": "classification",
            "snapshot": snapshot,
            "output_dir": str(tmp_path / "out"),
            "labels": labels,
            "params": {"validation_fraction": 0.2},
            **extra,
        },
        [lambda e: lines.append(e.get("line", ""))],
    )
    assert any(line.startswith("few-shot: labels have a median of") and "under 64" in line for line in lines), lines
    assert any(line.startswith("few-shot parameters: epochs=1, learning_rate=2e-05") for line in lines), lines
    assert result.metrics["micro"]["f1"] > 0.9
    info = json.loads((tmp_path / "out" / "labtrain.json").read_text())
    assert info["head"] == "setfit"
    folder = tmp_path / "out" / "model"
    head = joblib.load(folder / "model_head.pkl")
    assert json.loads((folder / "config_setfit.json").read_text())["labels"] == labels
    probabilities = head.predict_proba(SentenceTransformer(str(folder)).encode([text]))
    assert probabilities.shape[-1] == 2
    predicted = load(tmp_path / "out").predict([text])[0][0]["value"]["choices"]
    assert predicted == (["health"] if kind == "single" else ["respiratory", "skin"])


def test_the_few_shot_path_can_be_asked_for_or_refused_and_needs_a_known_value(tmp_path, toy):
    from trainers.dataset import Example
    from trainers.fewshot import few_shot_reason

    train = [Example(i, "t", ["a" if i % 3 else "b"]) for i in range(300)]
    assert few_shot_reason("classification", "minilm", "auto", train, ["a", "b"]) == (
        False,
        "fine-tuning: labels have a median of 150 examples, the smallest, 'b', 100 (a median of 64 or more): "
        "the encoder with a classification head",
    )
    # one rare label among well-filled ones is no few-shot project; most labels rare is one
    rare = [Example(i, "t", [["a", "b", "c"][i % 3] if i < 600 else "d"]) for i in range(610)]
    assert few_shot_reason("classification", "minilm", "auto", rare, ["a", "b", "c", "d"])[0] is False
    assert few_shot_reason("classification", "minilm", "auto", rare[:90] + rare[600:], ["a", "b", "c", "d"]) == (
        True,
        "few-shot: labels have a median of 30 examples, the smallest, 'd', 10 (a median under 64): SetFit's "
        "contrastive sentence-pair fine-tuning and a logistic head",
    )
    assert few_shot_reason("classification", "minilm", "on", train, ["a", "b"])[0] is True
    assert few_shot_reason("assertion", "minilm", "auto", train[:30], ["a", "b"])[0] is True
    assert few_shot_reason("ner", "minilm", "auto", train[:30], ["a", "b"]) == (False, "")
    assert few_shot_reason("classification", "minilm_words", "on", train[:30], ["a", "b"]) == (False, "")
    with pytest.raises(SpecError, match="few_shot='sometimes' must be one of auto, on, off"):
        train_spec = {
            "type": "classification",
            "snapshot": toy["classification"],
            "output_dir": str(tmp_path),
            "labels": ["travel", "health"],
            "params": {"few_shot": "sometimes"},
        }
        TrainSpec.from_dict(train_spec)


def test_a_type_and_embeddings_get_their_recipe_for_what_the_request_leaves_out(toy, tmp_path):
    spec = TrainSpec.from_dict(
        {
            "type": "ner",
            "snapshot": toy["ner"],
            "output_dir": str(tmp_path),
            "labels": ["PER"],
            "embeddings": "minilm",
            "params": {"epochs": 2},
        }
    )
    assert (spec.params.epochs, spec.params.learning_rate, spec.params.warmup, spec.params.average_last) == (
        2,
        1e-4,
        0.1,
        0.25,
    )  # epochs given; the rest from the ner/minilm recipe
    bilstm = TrainSpec.from_dict(
        {
            "type": "ner",
            "snapshot": toy["ner"],
            "output_dir": str(tmp_path),
            "labels": ["PER"],
            "embeddings": "bilstm",
            "params": {},
        }
    )
    assert (bilstm.params.epochs, bilstm.params.dropout, bilstm.params.learning_rate) == (12, 0.5, 1e-3)


@pytest.mark.parametrize("n_labels", [1, 2, 5])
def test_the_trained_multiple_choice_head_becomes_scikit_learn_heads_with_the_same_probabilities(n_labels):
    """The saved head (what joblib and SetFit load) answers as the layer trained; one label too."""
    import numpy as np
    import torch

    from trainers.fewshot import FewShotModel
    from trainers.pooled import SCALE, sklearn_head

    torch.manual_seed(n_labels)
    layer, x = torch.nn.Linear(8, n_labels), np.random.default_rng(0).normal(size=(6, 8))
    labels = [f"l{i}" for i in range(n_labels)]
    model = FewShotModel(None, None, sklearn_head(layer, 8), labels, True, [0.5] * n_labels, None, 16)
    model.embeddings = lambda texts: x
    expected = torch.sigmoid(layer(torch.tensor(SCALE * x, dtype=torch.float32))).detach()
    assert model.probabilities(["t"] * 6).shape == (6, n_labels)
    assert torch.allclose(model.probabilities(["t"] * 6), expected, atol=1e-5)
