"""The Spark NLP backend: where its JARs are, whether it can run here, and the local SparkSession
its trainings and predictions use. Spark NLP 3.4.4 on Spark 3.4 (Scala 2.12) with Java 17: the
lane whose JARs Maven Central serves here (see the README's "Spark NLP backend")."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from labtrain.errors import LabtrainError

SPARK_NLP_VERSION = "3.4.4"
POM = Path(__file__).with_name("pom.xml")
# Spark 3.4 on Java 17 reaches into these packages (Spark's own launcher adds the same list).
JAVA_OPENS = [
    "java.lang",
    "java.lang.invoke",
    "java.lang.reflect",
    "java.io",
    "java.net",
    "java.nio",
    "java.util",
    "java.util.concurrent",
    "java.util.concurrent.atomic",
    "sun.nio.ch",
    "sun.nio.cs",
    "sun.security.action",
    "sun.util.calendar",
]


class SparkUnavailable(LabtrainError):
    status_code = 422


def cache_dir() -> Path:
    base = Path(os.environ.get("LABTRAIN_CACHE") or Path.home() / ".cache" / "labtrain")
    return base / f"sparknlp-{SPARK_NLP_VERSION}"


def classpath() -> list[str]:
    """The JAR paths .ci/setup resolved (`classpath.txt`), or LABTRAIN_SPARKNLP_JARS (a folder)."""
    folder = os.environ.get("LABTRAIN_SPARKNLP_JARS")
    if folder:
        return sorted(str(p) for p in Path(folder).glob("*.jar"))
    listing = cache_dir() / "classpath.txt"
    return [p for p in listing.read_text().strip().split(os.pathsep) if p] if listing.exists() else []


def unavailable_reason() -> str | None:
    """None when a Spark NLP training can run on this machine, else what is missing."""
    if not shutil.which("java"):
        return "the sparknlp backend needs Java 17 (java is not on PATH)"
    jars = classpath()
    if not jars or not all(Path(j).exists() for j in jars):
        return (
            f"the sparknlp backend needs the Spark NLP {SPARK_NLP_VERSION} JARs: run .ci/setup "
            f"(it resolves them from Maven Central into {cache_dir()})"
        )
    missing = [name for name in ("pyspark", "sparknlp") if importlib.util.find_spec(name) is None]
    if missing:
        return f"the sparknlp backend needs pyspark and spark-nlp installed (missing: {', '.join(missing)})"
    return None


def java_version() -> str:
    out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return out.splitlines()[0] if out else "unknown"


def stop_session() -> None:
    """Stop the process's SparkSession and end its JVM (Spark keeps the JVM, and its driver memory,
    until the Python process exits): for a process that goes on doing other work after Spark."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is not None:
        spark.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    gateway.shutdown()
    proc = getattr(gateway, "proc", None)
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=60)
    SparkContext._gateway = None
    SparkContext._jvm = None


def session(cores: int = 1, driver_memory: str | None = None):
    """The process's local SparkSession with Spark NLP's JARs (made on first use). Driver memory
    defaults to 4g (LABTRAIN_SPARK_DRIVER_MEMORY): Spark NLP's own 16g does not fit beside Ray here."""
    reason = unavailable_reason()
    if reason:
        raise SparkUnavailable(reason)
    from pyspark.sql import SparkSession

    opens = " ".join(f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in JAVA_OPENS)
    builder = (
        SparkSession.builder.appName("labtrain")
        .master(f"local[{max(1, cores)}]")
        .config("spark.driver.memory", driver_memory or os.environ.get("LABTRAIN_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.driver.maxResultSize", "0")
        .config("spark.jars", ",".join(classpath()))
        .config("spark.driver.extraJavaOptions", opens)
        .config("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
        .config("spark.kryoserializer.buffer.max", "1000M")
        .config("spark.sql.shuffle.partitions", str(max(1, cores)))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    # spark-nlp 3.4.4's Python side still reads SparkSession._wrapped, which Spark 3.4 removed.
    spark._wrapped = spark
    return spark
