"""Load a trained model folder and pre-annotate: results in the Label Studio / Generative AI
Lab format (`from_name`, `to_name`, `type`, `value`), one list per input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labtrain.errors import LabtrainError, ValidationError
from trainers.dataset import NO_RELATION, assertion_text, relation_text
from trainers.text import Span


@dataclass
class Predictor:
    info: dict
    model: Any

    @property
    def type(self) -> str:
        return self.info["type"]

    def predict(self, inputs: list[str | dict]) -> list[list[dict]]:
        """Texts for ner and classification; for assertion and relation each input is
        {"text", "entities": [{"id"?, "start", "end", "label"}]} (a plain text has no entities)."""
        if self.type == "visual_ner":
            return self.predict_images(inputs)
        items = [{"text": x, "entities": []} if isinstance(x, str) else x for x in inputs]
        for i, item in enumerate(items):
            if not isinstance(item.get("text"), str):
                raise LabtrainError(f"input #{i} has no 'text'")
        if self.type == "ner":
            return self._ner([x["text"] for x in items])
        if self.type == "classification":
            return [
                [self._result({"choices": labels}, "choices")] if labels else []
                for labels in self.model.predict([x["text"] for x in items])
            ]
        if self.type == "assertion":
            return self._assertion(items)
        return self._relation(items)

    def predict_images(self, inputs: list[str | dict]) -> list[list[dict]]:
        """Visual NER: each input an image (a data URI or a file path) or {"image", "ocr"?: words
        as in a task's data.ocr}. One region per entity: the box around its words, in percent."""
        from trainers.ocr import image_from, page_words
        from trainers.visual_ner import predict_regions

        pages, sizes = [], []
        for i, item in enumerate(inputs):
            item = {"image": item} if isinstance(item, str) else item
            if not isinstance(item, dict) or not (isinstance(item.get("image"), str) or item.get("ocr")):
                raise LabtrainError(f"input #{i} has no 'image' (a data URI or a path) and no 'ocr' words")
            image = image_from(item["image"], f"input #{i}") if isinstance(item.get("image"), str) else None
            words, size, _ = page_words(item, [], image, self.info.get("language", "en"), f"input #{i}")
            pages.append(words)
            sizes.append(size)
        kind = self.info.get("result_type") or "rectanglelabels"
        out = []
        for size, found in zip(sizes, predict_regions(self.model, pages)):
            results = []
            for region, text in found:
                x0, y0, x1, y1 = region.box
                result = self._result(
                    {
                        "x": x0 / 10,
                        "y": y0 / 10,
                        "width": (x1 - x0) / 10,
                        "height": (y1 - y0) / 10,
                        "rotation": 0,
                        kind: [region.label],
                        "text": text,
                    },
                    kind,
                )
                if size:
                    result.update(original_width=size[0], original_height=size[1])
                results.append(result)
            out.append(results)
        return out

    def _result(self, value: dict, kind: str) -> dict:
        return {"from_name": self.info["from_name"], "to_name": self.info["to_name"], "type": kind, "value": value}

    def _ner(self, texts: list[str]) -> list[list[dict]]:
        from trainers.ner import predict_spans

        return [
            [
                self._result(
                    {"start": s.start, "end": s.end, "text": text[s.start : s.end], "labels": [s.label]}, "labels"
                )
                for s in spans
            ]
            for text, spans in zip(texts, predict_spans(self.model, texts))
        ]

    def _assertion(self, items: list[dict]) -> list[list[dict]]:
        flat = [
            (i, Span(e["start"], e["end"], e.get("label", "")))
            for i, x in enumerate(items)
            for e in x.get("entities", [])
        ]
        labels = self.model.predict([assertion_text(items[i]["text"], s) for i, s in flat])
        out: list[list[dict]] = [[] for _ in items]
        for (i, s), (label,) in zip(flat, labels):
            text = items[i]["text"]
            out[i].append(
                self._result(
                    {"start": s.start, "end": s.end, "text": text[s.start : s.end], "labels": [label]}, "labels"
                )
            )
        return out

    def _relation(self, items: list[dict]) -> list[list[dict]]:
        out: list[list[dict]] = [[] for _ in items]
        for i, item in enumerate(items):
            entities = [
                (e.get("id", str(n)), Span(e["start"], e["end"], e.get("label", "")))
                for n, e in enumerate(item.get("entities", []))
            ]
            pairs = [(h, t) for h in entities for t in entities if h[0] != t[0]]
            labels = self.model.predict([relation_text(item["text"], h[1], t[1]) for h, t in pairs])
            for (head, tail), (label,) in zip(pairs, labels):
                if label != NO_RELATION:
                    out[i].append(
                        {
                            "from_id": head[0],
                            "to_id": tail[0],
                            "type": "relation",
                            "direction": "right",
                            "labels": [label],
                        }
                    )
        return out


def load(output_dir: str | Path, device: str = "cpu") -> Predictor:
    """A training's output folder (with `labtrain.json` and `model/`)."""
    output_dir = Path(output_dir)
    try:
        info = json.loads((output_dir / "labtrain.json").read_text())
    except FileNotFoundError:
        raise LabtrainError(f"{output_dir} holds no trained model (labtrain.json is missing)") from None
    model_dir = output_dir / "model"
    if info.get("backend") == "sparknlp":
        return Predictor(info, _load_spark(model_dir, info))
    if info["embeddings"] == "custom":
        model = _load_custom(model_dir, info, device)
    elif info["type"] == "ner" and info["embeddings"] == "bilstm":
        from trainers.ner_bilstm import BiLstmTagger

        model = BiLstmTagger.load(model_dir, device)
    elif info["type"] in ("ner", "visual_ner"):
        from trainers.ner_encoder import TokenTagger

        model = TokenTagger.load(model_dir, info["max_length"], device)
    else:
        from trainers.fewshot import FewShotModel
        from trainers.sequence import SequenceModel

        thresholds = info.get("thresholds") or {}
        kind = FewShotModel if info.get("head") in ("setfit", "mean-pooled") else SequenceModel
        model = kind.load(model_dir, info["multiple"], list(thresholds.values()) or None, info["max_length"], device)
    return Predictor(info, model)


def _load_custom(model_dir: Path, info: dict, device: str):
    """What a custom training script wrote, when it is a transformers token classifier."""
    from trainers.custom import load_scorable
    from trainers.ner import tag_set

    script = info.get("script") or {}
    tagger, why = load_scorable(model_dir, tag_set(info["labels"]), info["max_length"], device)
    if tagger is None:
        raise ValidationError(
            f"this model was written by the custom script {script.get('name')!r} and labtrain cannot "
            f"load it to pre-annotate: {why}"
        )
    return tagger


def _load_spark(model_dir: Path, info: dict):
    """A Spark NLP pipeline folder, in this process's SparkSession (made on first use)."""
    import tempfile

    from trainers.spark import session
    from trainers.spark.train import SparkClassifier, SparkNerModel

    spark = session(cores=1, driver_memory="2g")
    if info["type"] == "ner":
        return SparkNerModel.load(model_dir, spark, Path(tempfile.mkdtemp(prefix="labtrain_spark_predict_")))
    return SparkClassifier.load(model_dir, spark, info["labels"], info["multiple"])
