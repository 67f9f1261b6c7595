"""The teacher's side of a step (mvld_hf.teacher_targets): every path that produces teacher embeddings refuses a
NaN row and a zero row through the one row check (mvld_hf.embedding_checks.check_embedding_rows)."""

import math

import datasets
import pytest
import torch

import mvld_hf.data
import mvld_hf.embedding_checks
import mvld_hf.precompute
from mvld_hf.data import DistillationCollator
from mvld_hf.embedding_checks import NonFiniteEmbeddingError, ZeroEmbeddingError
from mvld_hf.precompute import TeacherEmbeddingCache, precompute_teacher_embeddings
from mvld_hf.teacher_targets import TeacherEmbedder, TeacherTargets, teacher_targets, tokenize_in_collator
from tests.helpers import training_args

BAD = {"nan": (math.nan, NonFiniteEmbeddingError), "zero": (0.0, ZeroEmbeddingError)}


@pytest.fixture
def checks(monkeypatch):
    """Every call of the one row check, with what it raised (None when the rows passed)."""
    calls = []
    check = mvld_hf.embedding_checks.check_embedding_rows

    def spy(*args, **kwargs):
        try:
            out = check(*args, **kwargs)
        except ValueError as err:
            calls.append(err)
            raise
        calls.append(None)
        return out

    monkeypatch.setattr(mvld_hf.embedding_checks, "check_embedding_rows", spy)
    monkeypatch.setattr(mvld_hf.data, "check_embedding_rows", spy)
    monkeypatch.setattr(mvld_hf.precompute, "check_embedding_rows", spy)
    return calls


def _corrupt(teacher, monkeypatch, value, images=False):
    """The teacher's output row 1 becomes ``value`` on every caption route (raw captions, tokens) or, with
    ``images``, every image route (images, pixels)."""
    for name in ("encode_image", "encode_prepared_images") if images else ("encode_text", "encode_tokenized"):
        original = getattr(teacher, name)

        def broken(*args, original=original, **kwargs):
            out = original(*args, **kwargs).clone()
            out[1] = value
            return out

        monkeypatch.setattr(teacher, name, broken)


def _rows(toy_rows, n=6, images=False):
    rows, seen = [], set()
    for row in toy_rows:  # distinct English captions: row 1 of the teacher's output is row 1 of the batch
        if row["english"] not in seen:
            seen.add(row["english"])
            rows.append({k: v for k, v in row.items() if images or k != "image"})
        if len(rows) == n:
            return rows
    raise AssertionError("too few distinct captions")


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("route", ["captions", "collator_tokens", "cache", "images"])
def test_the_step_refuses_a_bad_teacher_row_through_the_one_check(route, bad, toy_rows, tokenizer, teacher,
                                                                  tmp_path, monkeypatch, checks):
    value, error = BAD[bad]
    args = training_args(tmp_path, method="dr", queue_size=12, per_device_train_batch_size=6,
                         anchor="image" if route == "images" else "text")
    cache = TeacherEmbeddingCache(str(tmp_path / "cache"), "fp") if route == "cache" else None
    embedder = TeacherEmbedder(teacher, cache)
    collator = DistillationCollator(tokenizer, args)
    if route == "collator_tokens":
        assert tokenize_in_collator(embedder, collator, args) and embedder.tokens_from_collator
    inputs = collator(_rows(toy_rows, images=route == "images"))
    assert ("teacher_input_ids" in inputs) == (route == "collator_tokens")
    good = teacher_targets(inputs, args, embedder, step=3)
    assert good.anchors.shape == (6, 16) and checks and checks[-1] is None
    _corrupt(teacher, monkeypatch, value, images=route == "images")
    if cache is not None:
        inputs = collator(_rows(toy_rows[40:], images=False))  # captions not cached yet
    with pytest.raises(error, match="at step 3") as raised:
        teacher_targets(inputs, args, embedder, step=3)
    assert checks[-1] is raised.value


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("route", ["map", "map_cache", "map_workers", "stream", "map_images", "map_workers_images",
                                   "stream_images"])
def test_precompute_refuses_a_bad_teacher_row_through_the_one_check(route, bad, toy_rows, teacher, tmp_path,
                                                                    monkeypatch, checks):
    value, error = BAD[bad]
    images = route.endswith("images")
    data = datasets.Dataset.from_list(_rows(toy_rows, n=8, images=images))
    source = data.to_iterable_dataset() if route.startswith("stream") else data
    _corrupt(teacher, monkeypatch, value, images)
    prepared = []  # the workers' route runs only the forward here, on prepared captions or pixels
    for name in ("embed_prepared_texts", "embed_prepared_images"):
        method = getattr(TeacherEmbedder, name)
        monkeypatch.setattr(TeacherEmbedder, name, lambda self, *a, method=method, name=name, **k:
                            prepared.append(name) or method(self, *a, **k))
    with pytest.raises(error, match=r"row 1 of the dataset") as raised:
        out = precompute_teacher_embeddings(source, teacher, anchor="image" if images else "text", batch_size=8,
                                            prepare_workers=2 if "workers" in route else 0,
                                            cache_dir=str(tmp_path / "cache") if route == "map_cache" else None)
        list(out)  # a stream is embedded as it is read
    assert checks[-1] is raised.value
    assert ("teacher_image_embeds" if images else "teacher_text_embeds") in str(raised.value)
    assert bool(prepared) == ("workers" in route)


@pytest.mark.parametrize("bad", sorted(BAD))
def test_the_collator_refuses_a_bad_precomputed_row_through_the_one_check(bad, toy_rows, tokenizer, tmp_path,
                                                                          checks):
    value, error = BAD[bad]
    args = training_args(tmp_path, method="fd")
    rows = [{**row, "teacher_text_embeds": [value if i == 1 else 1.0] * 16} for i, row in enumerate(_rows(toy_rows))]
    with pytest.raises(error, match=r"position 1 of its batch") as raised:
        DistillationCollator(tokenizer, args)(rows)
    assert checks[-1] is raised.value


def test_anchors_are_chosen_once_and_follow_the_gather(toy_rows, tokenizer, teacher, tmp_path):
    """The anchors are the text targets with anchor="text" (gathered once, not twice) and the image targets
    with anchor="image"."""
    calls = []

    def gather(x):
        calls.append(x)
        return torch.cat([x, x])

    text, image = torch.randn(3, 4), torch.randn(3, 4)
    gathered = TeacherTargets(text, image, "text").gathered(gather)
    assert len(calls) == 1 and gathered.anchors is gathered.text and gathered.anchors.shape == (6, 4)
    gathered = TeacherTargets(text, image, "image").gathered(gather)
    assert len(calls) == 3 and torch.equal(gathered.anchors, torch.cat([image, image]))
    args = training_args(tmp_path, method="fd")
    inputs = DistillationCollator(tokenizer, args)(_rows(toy_rows))
    targets = teacher_targets(inputs, args, TeacherEmbedder(teacher))
    assert targets.image is None and targets.anchors is targets.text
    with pytest.raises(ValueError, match="batch has no teacher_text_embeds and the trainer has no teacher"):
        teacher_targets(inputs, args)


@pytest.mark.parametrize("bad", sorted(BAD))
def test_the_cache_refuses_a_bad_row_through_the_one_check(bad, tmp_path, checks):
    """Stored or read back, a NaN or zero embedding never crosses the on-disk cache."""
    value, error = BAD[bad]
    cache = TeacherEmbeddingCache(str(tmp_path / "cache.sqlite"), "teacher")
    with pytest.raises(error, match="the text 'b'") as raised:
        cache.put({"a": torch.ones(4).numpy(), "b": torch.full((4,), value).numpy()})
    assert checks[-1] is raised.value and cache.get(["a", "b"]) == {}
    with cache.connection:  # a row written by an older version, or damaged
        cache.connection.execute("INSERT INTO embeddings VALUES (?, ?, ?)",
                                 (cache.key("b"), 4, torch.full((4,), value).numpy().tobytes()))
    with pytest.raises(error, match=r"cache .*cache.sqlite.*'b'") as raised:
        cache.get(["b"])
    assert checks[-1] is raised.value
