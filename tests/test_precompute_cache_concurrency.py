"""TeacherEmbeddingCache shared by several processes writing and reading at once: no lost or corrupt rows."""

import multiprocessing
import sqlite3
import zlib

import numpy as np

from mvld_hf.precompute import TeacherEmbeddingCache

WRITERS, BATCHES, DIM = 4, 25, 8


def vector(text: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIM).astype(np.float32)


def batch_texts(writer: int, i: int) -> list[str]:
    # half of every batch is this writer's own, half is written by every writer (the same caption on all ranks)
    return [f"writer {writer} caption {i}-{j}" for j in range(6)] + [f"shared caption {i}-{j}" for j in range(6)]


def write_and_read(cache: TeacherEmbeddingCache, writer: int) -> None:
    for i in range(BATCHES):
        texts = batch_texts(writer, i)
        found = cache.get(texts)
        for text, value in found.items():  # what another writer stored reads back whole
            if not np.array_equal(value, vector(text)):
                raise AssertionError(f"writer {writer} read a wrong vector for {text!r}")
        cache.put({t: vector(t) for t in texts if t not in found})


def test_concurrent_writers_lose_and_corrupt_no_row(tmp_path):
    cache = TeacherEmbeddingCache(str(tmp_path / "cache") + "/", "teacher-a", timeout=30)
    cache.put({"written before the fork": vector("written before the fork")})  # the parent's connection is open
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=write_and_read, args=(cache, w)) for w in range(WRITERS)]
    for process in processes:
        process.start()
    write_and_read(cache, WRITERS)  # the parent writes too, through the connection it opened before forking
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * WRITERS

    expected = {"written before the fork"} | {t for w in range(WRITERS + 1) for i in range(BATCHES)
                                             for t in batch_texts(w, i)}
    reader = TeacherEmbeddingCache(cache.path, "teacher-a")
    assert len(reader) == len(expected)
    found = reader.get(sorted(expected))
    assert found.keys() == expected
    assert all(np.array_equal(value, vector(text)) for text, value in found.items())
    with sqlite3.connect(cache.path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_damaged_row_reads_as_missing_and_is_replaced(tmp_path):
    cache = TeacherEmbeddingCache(str(tmp_path / "cache.sqlite"), "teacher-a")
    cache.put({"a": vector("a"), "b": vector("b")})
    with sqlite3.connect(cache.path) as connection:  # a row cut short (e.g. by a foreign writer)
        connection.execute("UPDATE embeddings SET value = substr(value, 1, 5) WHERE key = ?", (cache.key("a"),))
    assert cache.get(["a", "b"]).keys() == {"b"}
    cache.put({"a": vector("a")})
    assert np.array_equal(cache.get(["a"])["a"], vector("a"))
