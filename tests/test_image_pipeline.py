"""The parallel teacher-input pipeline (mvld_hf/image_pipeline.py): batches prepared in DataLoader workers come
back in order and equal to the in-process ones; the teacher's image/text paths split into a CPU half (workers)
and a forward half (here); evaluators use it."""

import io
import os

import datasets
import pytest
import torch
from PIL import Image

from mvld_hf import image_pipeline
from mvld_hf.evaluation import MultilingualEvaluator
from mvld_hf.image_pipeline import (
    PreparedBatches,
    default_num_workers,
    image_encoder_parts,
    iter_prepared_batches,
    load_image_processor,
)


def _images(n, size=40):
    return [Image.new("RGB", (size + i % 3, size), (17 * i % 256, 40, 200 - i)) for i in range(n)]


def _pid_batch(start, stop):
    return [(i, os.getpid()) for i in range(start, stop)]


def test_workers_give_the_same_batches_in_order_from_other_processes():
    serial = list(iter_prepared_batches(11, _pid_batch, 3, num_workers=0))
    parallel = list(iter_prepared_batches(11, _pid_batch, 3, num_workers=2))
    assert [[i for i, _ in b] for b in serial] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10]]
    assert [[i for i, _ in b] for b in parallel] == [[i for i, _ in b] for b in serial]
    assert {pid for b in serial for _, pid in b} == {os.getpid()}
    assert os.getpid() not in {pid for b in parallel for _, pid in b}
    tail = list(iter_prepared_batches(11, _pid_batch, 3, num_workers=0, start=5))
    assert [[i for i, _ in b] for b in tail] == [[5, 6, 7], [8, 9, 10]]


def test_prepared_batches_serve_map_style_requests_in_any_order():
    batches = PreparedBatches(10, _pid_batch, 4, num_workers=2)
    rows = [[i for i, _ in batches.take(a, b)] for a, b in ((0, 4), (4, 8), (8, 10), (0, 4), (5, 9), (9, 10), (2, 3))]
    assert rows == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3], [5, 6, 7, 8], [9], [2]]
    assert batches.take(2, 3)[0][1] == os.getpid()  # an odd range is made here
    assert batches.take(0, 4)[0][1] != os.getpid()  # a batch's range comes from a worker
    batches.close()


def _fail_at_six(start, stop):
    if start <= 6 < stop:
        raise ValueError("row 6 could not be decoded")
    return list(range(start, stop))


def test_an_error_in_a_worker_is_raised_here_with_its_message():
    with pytest.raises(ValueError, match="^row 6 could not be decoded") as raised:
        list(iter_prepared_batches(12, _fail_at_six, 4, num_workers=2))
    assert str(raised.value) == "row 6 could not be decoded"
    assert "DataLoader worker" in "".join(raised.value.__notes__)  # the worker's traceback comes along
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_prepared_batches(3, _fail_at_six, 0))


def test_default_workers(monkeypatch):
    monkeypatch.delenv("MVLD_HF_DATA_WORKERS", raising=False)
    assert default_num_workers(1) == 0  # a few batches: not worth starting processes
    assert 0 <= default_num_workers(100) <= 8
    monkeypatch.setenv("MVLD_HF_DATA_WORKERS", "3")
    assert default_num_workers(1) == 3
    monkeypatch.setenv("MVLD_HF_DATA_WORKERS", "-1")
    with pytest.raises(ValueError, match=">= 0"):
        default_num_workers(10)


def test_teacher_images_with_workers_equal_the_serial_path(teacher):
    images = _images(7)
    serial = teacher.encode_image(images, batch_size=3)
    parallel = teacher.encode_image(images, batch_size=3, num_workers=2)
    assert serial.shape == (7, teacher.dim)
    assert torch.allclose(serial, parallel, atol=1e-6)
    prepared = teacher.prepare_images(images[:2])  # the worker's half: tensors only, no model
    assert set(prepared) >= {"pixel_values"} and prepared["pixel_values"].shape[0] == 2
    assert torch.allclose(teacher.encode_prepared_images(prepared), serial[:2], atol=1e-6)


def test_a_corrupt_image_is_named_from_a_worker(teacher):
    rows = _images(5) + [{"bytes": b"\x89PNG garbage", "path": None}]
    with pytest.raises(ValueError, match="image 5"):
        teacher.encode_image(rows, batch_size=2, num_workers=2)


def test_teacher_text_tokenizer_is_what_encode_text_runs(teacher):
    texts = ["a small red circle", "a big blue square that is much longer", "a star"]
    tokenize = teacher.text_tokenizer()
    import pickle

    tokens = pickle.loads(pickle.dumps(tokenize))(texts)  # picklable: it goes to DataLoader workers
    assert tokens["input_ids"].shape[0] == 3
    assert torch.allclose(teacher.encode_tokenized(tokens), teacher.encode_text(texts), atol=1e-6)


def test_image_encoder_parts(teacher):
    prepare, encode, device = image_encoder_parts(teacher.encode_image)
    assert prepare == teacher.prepare_images and encode == teacher.encode_prepared_images
    assert device == teacher.device
    assert image_encoder_parts(teacher)[0] == teacher.prepare_images

    def plain(images):
        return torch.zeros(len(images), 4)

    assert image_encoder_parts(plain) == (None, plain, None)
    with pytest.raises(TypeError, match="image encoder"):
        image_encoder_parts(42)


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_evaluator_gallery_with_workers_equals_the_serial_one(teacher):
    images = _images(9)
    rows = {"image": [{"bytes": _png(im), "path": None} for im in images],
            "caption": [f"caption number {i}" for i in range(9)], "language": ["en"] * 9,
            "image_id": list(range(9))}
    dataset = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
    evaluator = MultilingualEvaluator(dataset, batch_size=2)
    serial = evaluator.encode_images(lambda ims: teacher.encode_image(ims), num_workers=0)
    parallel = evaluator.encode_images(teacher.encode_image, num_workers=2)  # processor in the workers
    decoded_only = evaluator.encode_images(lambda ims: teacher.encode_image(ims), num_workers=2)
    as_teacher = evaluator.encode_images(teacher, num_workers=0)
    for other in (parallel, decoded_only, as_teacher):
        assert torch.allclose(serial, other, atol=1e-6)
    assert torch.allclose(serial, teacher.encode_image(images), atol=1e-6)


def test_load_image_processor_picks_the_backend(tmp_path, teacher, monkeypatch):
    teacher.image_processor.save_pretrained(tmp_path)
    monkeypatch.setattr(image_pipeline, "torchvision_available", lambda: False)
    processor = load_image_processor(str(tmp_path))
    assert type(processor).__name__.endswith("Pil")
    seen = {}
    from transformers import AutoImageProcessor

    monkeypatch.setattr(image_pipeline, "torchvision_available", lambda: True)
    monkeypatch.setattr(AutoImageProcessor, "from_pretrained",
                        lambda *args, **kwargs: seen.update(kwargs) or processor)
    load_image_processor(str(tmp_path))
    assert seen["backend"] == "torchvision"


def test_precompute_with_workers_equals_the_in_process_path(toy_dataset, teacher, tmp_path):
    from mvld_hf import precompute_teacher_embeddings
    from mvld_hf.testing import CountingTeacher

    data = datasets.concatenate_datasets([toy_dataset, toy_dataset])  # every caption and image twice
    alone = precompute_teacher_embeddings(data, teacher, anchor="image", batch_size=16, prepare_workers=0)
    counting = CountingTeacher(teacher)
    workers = precompute_teacher_embeddings(data, counting, anchor="image", batch_size=16, prepare_workers=2)
    cached = precompute_teacher_embeddings(data, teacher, anchor="image", batch_size=16, prepare_workers=2,
                                           cache_dir=str(tmp_path / "cache"))  # images prepared, texts cached
    for column in ("teacher_text_embeds", "teacher_image_embeds"):
        want = torch.tensor(alone[column])
        assert torch.allclose(torch.tensor(workers[column]), want, atol=1e-6)
        assert torch.allclose(torch.tensor(cached[column]), want, atol=1e-6)
    assert 0 < counting.texts < len(data)  # the distinct captions of each map batch, tokenized in the workers


def test_precompute_names_a_corrupt_image_from_a_worker(toy_dataset, teacher):
    from mvld_hf import precompute_teacher_embeddings

    rows = toy_dataset.cast_column("image", datasets.Image(decode=False)).to_list()
    rows[37]["image"] = {"bytes": b"\x89PNG garbage", "path": None}
    data = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image(decode=False))
    with pytest.raises(ValueError, match=r"^the image of row 37 \('image'\)"):
        precompute_teacher_embeddings(data, teacher, anchor="image", batch_size=16, prepare_workers=2)


def test_pixels_rescaled_in_torch_equal_the_processors(teacher, monkeypatch):
    images = _images(4)
    full = teacher.image_processor(images=images, return_tensors="pt")["pixel_values"]
    prepared = teacher.prepare_images(images)  # a CPU teacher: rescaled in the preparing process
    assert prepared["pixel_values"].dtype == torch.float32
    assert torch.allclose(prepared["pixel_values"], full, atol=1e-6)
    monkeypatch.setattr(type(teacher), "device", property(lambda self: torch.device("meta")))
    raw = teacher.prepare_images(images)["pixel_values"]  # a GPU teacher's: uint8, a quarter of the bytes
    monkeypatch.undo()
    assert raw.dtype == torch.uint8
    assert torch.allclose(teacher._rescaled(raw), full, atol=1e-6)
    assert torch.allclose(teacher.encode_prepared_images({"pixel_values": raw}),
                          teacher.encode_prepared_images({"pixel_values": full}), atol=1e-5)


def test_a_cpu_teachers_pixels_cross_from_workers_as_uint8(teacher):
    """From a DataLoader worker a CPU teacher's pixels stay uint8 (a quarter of the shared-memory bytes: on two
    free cores the gallery's images/s with 2 workers went from 1.49x to 1.69x one process) and are rescaled where
    the forward runs: the same embeddings as batches prepared in this process."""
    from mvld_hf.image_pipeline import iter_prepared_batches

    images = _images(8)
    here = list(iter_prepared_batches(8, lambda a, b: images[a:b], 2, teacher.prepare_images, num_workers=0))
    there = list(iter_prepared_batches(8, lambda a, b: images[a:b], 2, teacher.prepare_images, num_workers=2))
    assert [b["pixel_values"].dtype for b in here] == [torch.float32] * 4
    assert [b["pixel_values"].dtype for b in there] == [torch.uint8] * 4
    for a, b in zip(here, there):
        assert torch.allclose(teacher.encode_prepared_images(a), teacher.encode_prepared_images(b), atol=1e-5)
