"""The English teacher folder: a few training steps on a tiny world, then loading with the Auto classes."""

import json
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mvld_hf.synthetic import build_world  # noqa: E402
from mvld_hf.synthetic.teacher import build_image_processor, english_retrieval, train_english_teacher  # noqa: E402

TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    world = build_world(seed=0, num_train_scenes=24, num_test_scenes=12, languages=["en", "fr"], cache_dir=root)
    path = train_english_teacher(world, output_dir=root / "teacher", steps=3, batch_size=8, warmup_steps=1,
                                 text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=16,
                                 num_threads=1, progress=False)
    return world, path


def test_folder_loads_with_auto_classes(tiny_teacher):
    world, path = tiny_teacher
    model = transformers.AutoModel.from_pretrained(path).eval()
    assert isinstance(model, transformers.CLIPModel)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    proc = transformers.AutoImageProcessor.from_pretrained(path)
    cfg = model.config.text_config
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (tok.bos_token_id, tok.eos_token_id,
                                                                         tok.pad_token_id)
    assert cfg.eos_token_id != 2  # CLIPTextTransformer then pools at the first EOS, not at argmax(input_ids)
    ids = tok("a big red circle")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids

    images = [r["image"] for r in world["test"].select(range(3))]
    pix = proc(images=images, return_tensors="pt")["pixel_values"]
    assert pix.shape == (3, 3, 64, 64)
    assert torch.equal(pix, build_image_processor()(images=images, return_tensors="pt")["pixel_values"])
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pix).pooler_output
        texts = ["a big red circle", "two objects: a small blue square to the right of a big red circle"]
        enc = tok(texts, padding=True, return_tensors="pt")
        txt = model.get_text_features(**enc).pooler_output
        single = model.get_text_features(**tok(texts[:1], return_tensors="pt")).pooler_output
    assert img.shape == (3, 16) and txt.shape == (2, 16)
    torch.testing.assert_close(txt[:1], single, atol=1e-5, rtol=1e-4)  # padding does not change the embedding


def test_eval_and_reuse(tiny_teacher):
    world, path = tiny_teacher
    with open(os.path.join(path, "teacher_eval.json")) as f:
        metrics = json.load(f)
    assert metrics["num_images"] == 12 and metrics["num_captions"] == 24
    for k in ("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10"):
        assert 0.0 <= metrics[k] <= 1.0
    assert metrics["t2i_r10"] >= metrics["t2i_r1"]
    assert metrics["vqa_en_questions"] > 0 and 0.0 <= metrics["vqa_en_accuracy"] <= 1.0
    again = english_retrieval(path, world)
    assert again["t2i_r10"] == pytest.approx(metrics["t2i_r10"])
    mtime = os.path.getmtime(os.path.join(path, "model.safetensors"))
    assert train_english_teacher(world, output_dir=path, steps=3) == str(path)  # complete folder: no training
    assert os.path.getmtime(os.path.join(path, "model.safetensors")) == mtime


class _FakeTorch:
    def __init__(self):
        self.threads = 2

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, n):
        self.threads = n


@pytest.mark.parametrize("slow", [1, 2])
def test_thread_chooser_keeps_the_faster_setting(slow):
    from mvld_hf.synthetic.teacher import ThreadChooser

    fake = _FakeTorch()
    chooser = ThreadChooser(fake, [2, 1], every=10)
    used = []
    for step in range(25):
        n = chooser.threads_for(step)
        assert fake.threads == n
        used.append(n)
        chooser.record(step, n, 1.0 if n == slow else 0.1)
    assert used[1:5] == [2, 2, 1, 1]  # the probe window
    assert set(used[5:10]) == {3 - slow} and set(used[15:20]) == {3 - slow}
