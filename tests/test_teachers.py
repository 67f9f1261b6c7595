import pytest
import torch
from PIL import Image

from mvld_hf import DualEncoderTeacher, SentenceTransformerTeacher, TeacherCapabilityError, load_teacher


def test_teacher_is_frozen_and_batch_size_invariant(teacher):
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert not teacher.model.training
    texts = ["a small red circle", "a big blue square", "a small green star"]
    one = teacher.encode_text(texts, batch_size=1)
    all_ = teacher.encode_text(texts, batch_size=8)
    assert one.shape == (3, teacher.dim) and one.dtype == torch.float32
    assert torch.allclose(one, all_, atol=1e-5)


def test_text_embedding_is_the_models_pooler_output(teacher, tokenizer):
    batch = tokenizer(["a big red star"], return_tensors="pt")
    expected = teacher.model.get_text_features(**batch).pooler_output
    assert torch.allclose(teacher.encode_text(["a big red star"]), expected, atol=1e-6)


def test_image_embeddings(teacher):
    images = [Image.new("RGB", (40, 40), c) for c in ("red", "blue")] + [Image.new("L", (32, 32), 128)]
    emb = teacher.encode_image(images, batch_size=2)
    assert emb.shape == (3, teacher.dim) and torch.isfinite(emb).all()
    assert not torch.allclose(emb[0], emb[1])


def test_bad_inputs(teacher):
    with pytest.raises(ValueError, match="empty"):
        teacher.encode_text(["ok", "   "])
    with pytest.raises(TypeError, match="PIL"):
        teacher.encode_image(["not an image"])
    with pytest.raises(ValueError, match="could not be decoded"):
        teacher.encode_image([{"bytes": b"\x89PNG garbage", "path": None}])


def test_load_teacher_from_a_saved_clip_folder(teacher, tmp_path):
    teacher.model.save_pretrained(tmp_path)
    teacher.tokenizer.save_pretrained(tmp_path)
    teacher.image_processor.save_pretrained(tmp_path)
    loaded = load_teacher(str(tmp_path))
    assert isinstance(loaded, DualEncoderTeacher) and loaded.supports_images
    texts = ["a small red circle"]
    assert torch.allclose(loaded.encode_text(texts), teacher.encode_text(texts), atol=1e-6)
    image = Image.new("RGB", (32, 32), "green")
    assert torch.allclose(loaded.encode_image([image]), teacher.encode_image([image]), atol=1e-6)


def test_sentence_transformer_teacher_is_text_only(tokenizer, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoModel

    from mvld_hf.testing import tiny_backbone_config

    AutoModel.from_config(tiny_backbone_config(len(tokenizer), model_type="bert")).save_pretrained(tmp_path / "b")
    tokenizer.save_pretrained(tmp_path / "b")
    transformer = Transformer(str(tmp_path / "b"))
    st = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")])
    st.save(str(tmp_path / "st"))
    loaded = load_teacher(str(tmp_path / "st"))
    assert isinstance(loaded, SentenceTransformerTeacher)
    assert loaded.dim == 32
    assert loaded.encode_text(["a red star", "a blue star"]).shape == (2, 32)
    with pytest.raises(TeacherCapabilityError, match="text-only"):
        loaded.encode_image([Image.new("RGB", (8, 8))])


def test_load_teacher_reports_a_missing_teacher(tmp_path):
    with pytest.raises(OSError, match="teacher"):
        load_teacher(str(tmp_path / "nope" / "teacher"))


def test_siglip2_teacher_passes_patch_masks_and_pads_to_fixed_length(tokenizer):
    import transformers
    from transformers import Siglip2Config, Siglip2Model

    torch.manual_seed(0)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=4)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, patch_size=8,
                  num_patches=16)
    model = Siglip2Model(Siglip2Config(text_config=text, vision_config=vision))
    processor = transformers.Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)
    siglip = DualEncoderTeacher(model, tokenizer, processor, name_or_path="tiny-siglip2")
    assert siglip.fixed_length == 64  # SigLIP embeds text padded to 64 tokens
    images = [Image.new("RGB", (32, 32), "red"), Image.new("RGB", (40, 24), "blue")]
    emb = siglip.encode_image(images)
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()
    inputs = processor(images=images[:1], return_tensors="pt")
    assert "spatial_shapes" in inputs  # the reason every processor output is passed through
    assert torch.allclose(emb[0], model.get_image_features(**inputs).pooler_output[0], atol=1e-5)
    batch = tokenizer(["a red star"], padding="max_length", max_length=64, return_tensors="pt")
    assert torch.allclose(siglip.encode_text(["a red star"]),
                          model.get_text_features(input_ids=batch["input_ids"]).pooler_output, atol=1e-5)


def test_teacher_dtype_is_what_the_device_is_fast_in(monkeypatch):
    from mvld_hf.teachers import teacher_dtype

    assert teacher_dtype() is torch.float32 and teacher_dtype("cpu") is torch.float32  # CPU: float32
    assert teacher_dtype(torch.device("cpu"), "auto") is torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert teacher_dtype("cuda") is torch.bfloat16 and teacher_dtype("cuda:1") is torch.bfloat16  # Ampere and later
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert teacher_dtype("cuda") is torch.float16  # bf16 only emulated (V100, T4): float16
    assert teacher_dtype("cuda", "float32") is torch.float32  # the flag that keeps float32
    assert teacher_dtype("cpu", "bfloat16") is torch.bfloat16 and teacher_dtype("cuda", torch.float16) is torch.float16
    with pytest.raises(ValueError, match="auto, float32, bfloat16, float16"):
        teacher_dtype("cuda", "fp8")


def test_bf16_teacher_embeddings_stay_close_to_float32(teacher, tmp_path):
    """A teacher loaded in bf16 returns float32 embeddings within cosine 0.99 of the float32 teacher's (the tiny
    random CLIP here gives 1.0000 to four places; the offline world's trained CLIP: benchmarks/RESULTS.md)."""
    teacher.model.save_pretrained(tmp_path)
    teacher.tokenizer.save_pretrained(tmp_path)
    teacher.image_processor.save_pretrained(tmp_path)
    half = load_teacher(str(tmp_path), dtype=torch.bfloat16)
    assert next(half.model.parameters()).dtype is torch.bfloat16
    texts = ["a small red circle", "a big blue square next to a green star", "two yellow triangles"]
    images = [Image.new("RGB", (36, 32), c) for c in ("red", "blue", "white")]
    for full, low in ((teacher.encode_text(texts), half.encode_text(texts)),
                      (teacher.encode_image(images), half.encode_image(images))):
        assert low.dtype is torch.float32  # what precompute writes stays float32
        cosine = torch.nn.functional.cosine_similarity(full, low, dim=-1)
        assert cosine.min() > 0.99, cosine
        assert not torch.equal(full, low)  # it really ran in bf16


def test_cli_loads_the_teacher_in_the_dtype_of_teacher_dtype(monkeypatch):
    """--teacher_dtype (default auto) reaches load_teacher; it is refused with the offline world's teacher."""
    import mvld_hf
    from mvld_hf.cli.arguments import CliError, parse_args
    from mvld_hf.cli.hub_data import hub_setup

    hub = ["--output_dir", "x", "--teacher", "openai/clip-vit-large-patch14", "--student", "xlm-roberta-base",
           "--dataset", "d/x", "--use_cpu", "true"]
    seen = []

    def fake_load_teacher(name, **kwargs):
        seen.append(kwargs["dtype"])
        raise RuntimeError("stop here")

    monkeypatch.setattr(mvld_hf, "load_teacher", fake_load_teacher)
    for flags, dtype in (([], torch.float32), (["--teacher_dtype", "bfloat16"], torch.bfloat16)):
        model_args, data_args, args = parse_args(hub + flags)
        assert model_args.teacher_dtype == (flags[1] if flags else "auto")
        with pytest.raises(RuntimeError, match="stop here"):
            hub_setup(model_args, data_args, args)
        assert seen[-1] is dtype  # auto on the CPU: float32
    with pytest.raises(SystemExit):
        parse_args(hub + ["--teacher_dtype", "fp8"])
    with pytest.raises(CliError, match="--teacher_dtype do"):
        parse_args(["--output_dir", "x", "--teacher_dtype", "bfloat16"])
