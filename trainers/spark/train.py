"""Spark NLP trainings: NerDL for `ner`, ClassifierDL / MultiClassifierDL for `classification`, over
MiniLM word vectors (trainers.spark.vectors). Documents, splits, tokens and the scorer are the
PyTorch trainers' own, so the two backends compare like for like; Spark NLP's own training log
is streamed to the reporter as it is written and kept in the output folder."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trainers import dataset
from trainers.dataset import Document
from trainers.loop import EpochResult
from trainers.metrics import ner_scores
from trainers.ner import NerDocument, prepare, tag_set
from trainers.reporting import EpochTable, Reporter
from trainers.sequence import score
from trainers.spark import cache_dir, session
from trainers.spark.vectors import DIMENSIONS, STORAGE_REF, write_vectors
from trainers.spec import TrainSpec
from trainers.text import spans_from_bio

# Spark NLP's Annotation, as Parquet (end offsets are inclusive in Spark NLP).
ANNOTATION = pa.list_(
    pa.struct(
        [
            ("annotatorType", pa.string()),
            ("begin", pa.int32()),
            ("end", pa.int32()),
            ("result", pa.string()),
            ("metadata", pa.map_(pa.string(), pa.string())),
            ("embeddings", pa.list_(pa.float32())),
        ]
    )
)
NER_COLUMNS = {"document": "document", "sentence": "document", "token": "token", "label": "named_entity"}
SENTENCE_END = {".", "!", "?"}


def _annotation(kind: str, begin: int, end: int, result: str, metadata: dict) -> dict:
    return {
        "annotatorType": kind,
        "begin": begin,
        "end": end - 1,
        "result": result,
        "metadata": list(metadata.items()),
        "embeddings": [],
    }


def sentence_ids(doc: NerDocument) -> list[int]:
    """A sentence number per word: a new sentence after . ! ? that ends a word longer than two
    letters (not "Mr." or "U.S.") and precedes a capitalised word across a space."""
    ids, current = [], 0
    for i, (word, _, end) in enumerate(doc.words):
        ids.append(current)
        following = doc.words[i + 1] if i + 1 < len(doc.words) else None
        if (
            word in SENTENCE_END
            and following
            and following[1] > end
            and following[0][:1].isupper()
            and i > 0
            and (len(doc.words[i - 1][0]) > 2 or doc.words[i - 1][0].islower())
        ):
            current += 1
    return ids


def ner_rows(docs: list[NerDocument], tags: list[list[str]] | None = None) -> pa.Table:
    """One row per document: Spark NLP's document, sentence, token and (with tags) label columns."""
    rows = []
    for n, doc in enumerate(docs):
        ids = sentence_ids(doc)
        sentences = []
        for k in sorted(set(ids)):
            members = [w for w, s in zip(doc.words, ids) if s == k]
            begin, end = members[0][1], members[-1][2]
            sentences.append(_annotation("document", begin, end, doc.text[begin:end], {"sentence": str(k)}))
        row = {
            "row": n,
            "text": doc.text,
            "document": [_annotation("document", 0, max(1, len(doc.text)), doc.text, {"sentence": "0"})],
            "sentence": sentences,
            "token": [_annotation("token", b, e, w, {"sentence": str(s)}) for (w, b, e), s in zip(doc.words, ids)],
        }
        if tags is not None:
            row["label"] = [
                _annotation("named_entity", b, e, t, {"word": w, "sentence": str(s)})
                for (w, b, e), s, t in zip(doc.words, ids, tags[n])
            ]
        rows.append(row)
    schema = pa.schema(
        [("row", pa.int64()), ("text", pa.string())]
        + [(c, ANNOTATION) for c in NER_COLUMNS if tags is not None or c != "label"]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def annotated_frame(spark, table: pa.Table, path: Path):
    """The table as a Spark DataFrame whose columns carry Spark NLP's annotatorType metadata."""
    from pyspark.sql import functions as F

    pq.write_table(table, path)
    frame = spark.read.parquet(str(path))
    return frame.select(
        "row",
        "text",
        *(F.col(c).alias(c, metadata={"annotatorType": t}) for c, t in NER_COLUMNS.items() if c in frame.columns),
    )


class LogTail(threading.Thread):
    """Follows the log files Spark NLP writes (`setOutputLogsPath`) while `fit` runs: every line
    goes to the reporter, and each finished epoch moves the progress bar."""

    EPOCH = re.compile(r"Epoch (\d+)/(\d+) - ([\d.]+)s - loss: ([\d.eE+-]+)")
    MICRO = re.compile(r"Micro-average\s+prec: ([\d.]+), rec: ([\d.]+), f1: ([\d.]+)")

    def __init__(self, folder: Path, reporter: Reporter, epochs: int):
        super().__init__(daemon=True)
        self.folder, self.reporter, self.epochs = folder, reporter, epochs
        self.rows: list[dict] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        offsets: dict[Path, int] = {}
        while True:
            stop = self.stopping.is_set()
            for path in sorted(self.folder.glob("*.log")):
                with open(path, "rb") as f:
                    f.seek(offsets.get(path, 0))
                    data = f.read()
                complete = data if stop else data[: data.rfind(b"\n") + 1]  # a line being written waits
                offsets[path] = offsets.get(path, 0) + len(complete)
                for line in complete.decode("utf-8", errors="replace").splitlines():
                    self.take(line)
            if stop:
                return
            self.stopping.wait(0.5)

    def take(self, line: str) -> None:
        self.reporter.line(f"sparknlp | {line}")
        epoch, micro = self.EPOCH.search(line), self.MICRO.search(line)
        if epoch:
            self.rows.append({"loss": float(epoch.group(4)), "seconds": float(epoch.group(3)), "scores": None})
            self.reporter.progress(5 + 85 * len(self.rows) / self.epochs, len(self.rows))
        elif micro and self.rows and self.rows[-1]["scores"] is None:
            p, r, f1 = (float(g) for g in micro.groups())
            self.rows[-1]["scores"] = {"precision": p, "recall": r, "f1": f1}

    def finish(self) -> list[EpochResult]:
        self.stopping.set()
        self.join()
        best = float("-inf")
        results = []
        for n, row in enumerate(self.rows, 1):
            f1 = row["scores"]["f1"] if row["scores"] else float(n)
            results.append(EpochResult(n, row["loss"], row["scores"], row["seconds"], f1 > best))
            best = max(best, f1)
        return results


@dataclass
class SparkNerModel:
    """A trained NerDL with the word vectors it reads: tags for our own words (as the PyTorch
    taggers), and a Spark NLP pipeline folder for everyone else."""

    spark: object
    embeddings: object  # WordEmbeddingsModel
    ner: object  # NerDLModel
    work: Path

    def predict_tags(self, word_lists: list[list[str]]) -> list[list[str]]:
        return self.tags_of([NerDocument(" ".join(words), joined_offsets(words), [], []) for words in word_lists])

    def tags_of(self, docs: list[NerDocument]) -> list[list[str]]:
        with tempfile.TemporaryDirectory(dir=self.work) as scratch:
            frame = annotated_frame(self.spark, ner_rows(docs), Path(scratch) / "predict.parquet")
            out = self.ner.transform(self.embeddings.transform(frame)).select("row", "ner.result").collect()
        by_row = {r["row"]: list(r["result"]) for r in out}
        return [by_row.get(n, ["O"] * len(d.words)) for n, d in enumerate(docs)]

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def save(self, directory: Path) -> None:
        from pyspark.ml import PipelineModel
        from sparknlp.annotator import NerConverter, SentenceDetector, Tokenizer
        from sparknlp.base import DocumentAssembler

        assembler = DocumentAssembler().setInputCol("text").setOutputCol("document")
        sentences = SentenceDetector().setInputCols(["document"]).setOutputCol("sentence")
        tokenizer = Tokenizer().setInputCols(["sentence"]).setOutputCol("token")
        text = self.spark.createDataFrame([("labtrain",)], ["text"])
        token_model = tokenizer.fit(sentences.transform(assembler.transform(text)))
        converter = NerConverter().setInputCols(["sentence", "token", "ner"]).setOutputCol("entities")
        PipelineModel(
            stages=[assembler, sentences, token_model, self.embeddings, self.ner, converter]
        ).write().overwrite().save(str(directory))

    @classmethod
    def load(cls, directory: Path, spark, work: Path) -> SparkNerModel:
        from pyspark.ml import PipelineModel

        stages = PipelineModel.load(str(directory)).stages
        return cls(spark, stages[3], stages[4], work)


def joined_offsets(words: list[str]) -> list[tuple[str, int, int]]:
    """The words with their offsets in `" ".join(words)`."""
    out, at = [], 0
    for w in words:
        out.append((w, at, at + len(w)))
        at += len(w) + 1
    return out


@dataclass
class SparkClassifier:
    """A trained ClassifierDL / MultiClassifierDL pipeline (text in, labels out)."""

    spark: object
    pipeline: object  # PipelineModel: DocumentAssembler .. classifier
    labels: list[str]
    multiple: bool
    work: Path | None = None

    def close(self) -> None:
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)

    def predict(self, texts: list[str]) -> list[list[str]]:
        frame = self.spark.createDataFrame([(i, t) for i, t in enumerate(texts)], ["row", "text"])
        out = self.pipeline.transform(frame).select("row", "class.result").collect()
        by_row = {r["row"]: [x for x in r["result"] if x] for r in out}
        if self.multiple:
            return [by_row.get(i, []) for i in range(len(texts))]
        # ClassifierDL always answers; an empty answer (an empty text) counts as the first label.
        return [by_row.get(i) or self.labels[:1] for i in range(len(texts))]

    def save(self, directory: Path) -> None:
        self.pipeline.write().overwrite().save(str(directory))

    @classmethod
    def load(cls, directory: Path, spark, labels: list[str], multiple: bool) -> SparkClassifier:
        from pyspark.ml import PipelineModel

        return cls(spark, PipelineModel.load(str(directory)), labels, multiple)


def word_embeddings(vectors: Path, input_cols: list[str]):
    from sparknlp.annotator import WordEmbeddings
    from sparknlp.common import ReadAs

    return (
        WordEmbeddings()
        .setStoragePath(str(vectors), ReadAs.TEXT)
        .setDimension(DIMENSIONS)
        .setStorageRef(STORAGE_REF)
        .setCaseSensitive(False)
        .setInputCols(input_cols)
        .setOutputCol("embeddings")
    )


def train_spark(spec: TrainSpec, documents: list[Document], lr: float, reporter: Reporter) -> tuple:
    """(model, metrics, primary test scores, epochs, summary, extra), as trainers.run writes them."""
    from trainers.spark import java_version

    work = Path(tempfile.mkdtemp(prefix="labtrain_spark_"))  # vectors, Parquet parts, Spark's scratch
    logs = Path(spec.output_dir) / "sparknlp_logs"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()
    cores = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)  # Ray sets it to the bundle's CPUs
    spark = session(cores=cores)
    reporter.line(
        f"backend: Spark NLP {spark_nlp_version()} on Spark {spark.version} (local[{cores}], "
        f"driver memory {spark.conf.get('spark.driver.memory')}), {java_version()}; "
        f"session up in {time.monotonic() - started:.1f} s"
    )
    reporter.progress(3)
    try:
        if spec.type == "ner":
            return _train_ner(spark, spec, documents, lr, reporter, work, logs)
        return _train_classifier(spark, spec, documents, lr, reporter, work, logs)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def spark_nlp_version() -> str:
    import sparknlp

    return sparknlp.version()


def _vectors(words, work: Path, reporter: Reporter) -> Path:
    path = work / "vectors.txt"
    started = time.monotonic()
    count = write_vectors(words, path, cache_dir() / "vectors")
    reporter.line(
        f"word vectors: {count} words, {DIMENSIONS} dimensions (MiniLM word pieces, PCA) in {path.name} "
        f"({time.monotonic() - started:.1f} s)"
    )
    return path


def _train_ner(
    spark, spec: TrainSpec, documents: list[Document], lr: float, reporter: Reporter, work: Path, logs: Path
) -> tuple:
    from sparknlp.annotator import NerDLApproach

    params = spec.params
    docs = prepare(documents, spec.labels, reporter)
    splits = dataset.split_examples(docs, [d.split for d in documents], params.validation_share, params.seed)
    if not splits.train or not any(t != "O" for d in splits.train for t in d.tags):
        raise dataset.no_training_examples("ner", spec.snapshot, spec.labels)
    vectors = _vectors((w for d in docs for w, _, _ in d.words), work, reporter)
    embeddings = word_embeddings(vectors, ["sentence", "token"])
    train = annotated_frame(spark, ner_rows(splits.train, [d.tags for d in splits.train]), work / "train.parquet")
    embeddings_model = embeddings.fit(train)
    summary = f"documents: {splits.sizes()}"
    reporter.line(summary)
    approach = (
        NerDLApproach()
        .setInputCols(["sentence", "token", "embeddings"])
        .setLabelColumn("label")
        .setOutputCol("ner")
        .setMaxEpochs(params.epochs)
        .setLr(lr)
        .setPo(params.decay)
        .setDropout(params.dropout)
        .setBatchSize(params.batch_size)
        .setRandomSeed(params.seed)
        .setEnableOutputLogs(True)
        .setOutputLogsPath(str(logs))
        .setEvaluationLogExtended(True)
        .setIncludeConfidence(True)
    )
    if splits.validation:
        validation = annotated_frame(
            spark, ner_rows(splits.validation, [d.tags for d in splits.validation]), work / "validation_in.parquet"
        )
        embeddings_model.transform(validation).write.mode("overwrite").parquet(str(work / "validation.parquet"))
        approach = approach.setTestDataset(str(work / "validation.parquet"))
        reporter.line(
            "validation: Spark NLP scores the validation part after every epoch, per IOB tag "
            "(its Micro-average below); labtrain's entity scores come at the end"
        )
    reporter.line(
        f"model: Spark NLP NerDLApproach (char CNN + BiLSTM + CRF, its bundled TensorFlow graph for "
        f"{len(tag_set(spec.labels))} tags and {DIMENSIONS}-dimension vectors); lr {lr}, po (decay) "
        f"{params.decay}, dropout {params.dropout}, batch {params.batch_size}"
    )
    tail = LogTail(logs, reporter, params.epochs)
    tail.start()
    try:
        ner_model = approach.fit(embeddings_model.transform(train))
    except Exception as exc:
        tail.finish()
        raise _spark_error(exc) from None
    epochs = _epoch_table(tail.finish(), reporter)
    model = SparkNerModel(spark, embeddings_model, ner_model, work)
    scores = None
    if splits.test:
        predicted = model.tags_of(splits.test)
        scores = ner_scores(
            [d.spans for d in splits.test],
            [spans_from_bio(d.words, t) for d, t in zip(splits.test, predicted)],
            [d.tags for d in splits.test],
            predicted,
            spec.labels,
        )
    metrics = {"entity": scores["entity"], "token": scores["token"]} if scores else {}
    return model, metrics, scores["entity"] if scores else None, epochs, summary, {}


def _train_classifier(
    spark, spec: TrainSpec, documents: list[Document], lr: float, reporter: Reporter, work: Path, logs: Path
) -> tuple:
    from pyspark.ml import Pipeline
    from sparknlp.annotator import ClassifierDLApproach, MultiClassifierDLApproach, SentenceEmbeddings, Tokenizer
    from sparknlp.base import DocumentAssembler

    params = spec.params
    examples, splits_of, _ = dataset.training_examples("classification", documents, spec.labels, spec.snapshot)
    splits = dataset.split_examples(examples, splits_of, params.validation_share, params.seed)
    summary = f"examples: {splits.sizes()}"
    reporter.line(summary)
    vectors = _vectors((w for e in examples for w in e.text.split()), work, reporter)
    if spec.multiple:
        classifier = MultiClassifierDLApproach().setLabelColumn("labels").setThreshold(0.5)
        frame = spark.createDataFrame([(e.text, e.labels) for e in splits.train], ["text", "labels"])
    else:
        classifier = ClassifierDLApproach().setLabelColumn("label")
        frame = spark.createDataFrame([(e.text, e.labels[0]) for e in splits.train], ["text", "label"])
    classifier = (
        classifier.setInputCols(["sentence_embeddings"])
        .setOutputCol("class")
        .setMaxEpochs(params.epochs)
        .setLr(lr)
        .setBatchSize(params.batch_size)
        .setRandomSeed(params.seed)
        .setEnableOutputLogs(True)
        .setOutputLogsPath(str(logs))
    )
    if not spec.multiple:
        classifier = classifier.setDropout(params.dropout)
    stages = [
        DocumentAssembler().setInputCol("text").setOutputCol("document"),
        Tokenizer().setInputCols(["document"]).setOutputCol("token"),
        word_embeddings(vectors, ["document", "token"]),
        SentenceEmbeddings()
        .setInputCols(["document", "embeddings"])
        .setOutputCol("sentence_embeddings")
        .setPoolingStrategy("AVERAGE"),
        classifier,
    ]
    name = (
        "MultiClassifierDLApproach (BiLSTM over the sentence vector, sigmoid, threshold 0.5)"
        if spec.multiple
        else "ClassifierDLApproach (DNN over the sentence vector, softmax)"
    )
    reporter.line(
        f"model: Spark NLP {name} over averaged word vectors; lr {lr}, batch {params.batch_size}"
        + ("" if spec.multiple else f", dropout {params.dropout}")
        + ("; decay is not a parameter of this annotator (ignored)" if params.decay else "")
    )
    tail = LogTail(logs, reporter, params.epochs)
    tail.start()
    try:
        pipeline = Pipeline(stages=stages).fit(frame)
    except Exception as exc:
        tail.finish()
        raise _spark_error(exc) from None
    epochs = tail.finish()
    model = SparkClassifier(spark, pipeline, list(spec.labels), spec.multiple, work)
    epochs = _epoch_table(epochs, reporter)  # ClassifierDL scores nothing per epoch: loss and time
    if splits.validation:
        reporter.line(f"validation: {score(model, splits.validation)['micro']}")
    primary = score(model, splits.test) if splits.test else None
    return model, dict(primary or {}), primary, epochs, summary, {}


def _epoch_table(epochs: list[EpochResult], reporter: Reporter) -> list[EpochResult]:
    table = EpochTable(reporter)
    for result in epochs:
        table.row(result.epoch, result.loss, result.scores, result.seconds, "*" if result.improved else "")
    return epochs


def _spark_error(exc: Exception) -> Exception:
    """Spark's Py4J errors carry a Java stack: keep the message a person can act on."""
    text = str(exc)
    found = re.search(r"(?:IllegalArgumentException|IllegalStateException|Exception): (.+?)(?:\n|$)", text)
    message = found.group(1).strip() if found else text.splitlines()[0] if text else type(exc).__name__
    if "Could not find a suitable tensorflow graph" in text or "Graph [" in text:
        from trainers.spec import SpecError

        return SpecError(f"Spark NLP has no bundled NerDL graph for this data: {message}")
    return RuntimeError(f"Spark NLP training failed: {message}")
