"""The Spark backend's word vectors: MiniLM's whole words are written once into the cache, and each
training's file is that plus its project's other words (no Spark needed)."""

from __future__ import annotations

from trainers.spark.vectors import DIMENSIONS, write_vectors


def vectors(path) -> dict[str, list[str]]:
    rows = (line.split(" ") for line in path.read_text(encoding="utf-8").splitlines())
    return {row[0]: row[1:] for row in rows}


def test_minilm_words_are_written_once_and_each_training_adds_its_own(tmp_path):
    cache = tmp_path / "cache"
    first = write_vectors(["Greta", "lives", "in", "Zqxvolm", " "], tmp_path / "a.txt", cache)
    (base,) = cache.glob("minilm_words_*.txt")
    written = base.stat().st_mtime_ns
    second = write_vectors(["Dublin", "Brwxtqk"], tmp_path / "b.txt", cache)
    assert base.stat().st_mtime_ns == written  # reused, not written again
    a, b = vectors(tmp_path / "a.txt"), vectors(tmp_path / "b.txt")
    assert first == len(a) and second == len(b) and len(a) > 20_000
    assert "zqxvolm" in a and "zqxvolm" not in b and "brwxtqk" in b  # each its own project's words
    assert a["lives"] == b["lives"] and a["dublin"] == b["dublin"]  # the cached words, the same in both
    assert all(len(v) == DIMENSIONS for v in (a["zqxvolm"], b["brwxtqk"], a["lives"]))


def test_a_cache_that_cannot_be_written_falls_back_beside_the_file(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    count = write_vectors(["Oslo"], tmp_path / "v.txt", blocker / "cache")
    assert count == len(vectors(tmp_path / "v.txt")) and "oslo" in vectors(tmp_path / "v.txt")
    assert list((tmp_path / "vectors-cache").glob("minilm_words_*.txt"))
