"""examples/distill.py with a text-only teacher and everything local: folders for the teacher and the student,
JSON-lines files for the data; it ends by printing per-language translation retrieval (issue 11)."""

import json


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_text_only_teacher_run_prints_translation_retrieval(distill_script, toy_rows, tokenizer, tmp_path, capsys):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoModel

    from mvld_hf.testing import tiny_backbone_config

    for name, seed in (("teacher_backbone", 0), ("student", 1)):
        import torch

        torch.manual_seed(seed)
        AutoModel.from_config(tiny_backbone_config(len(tokenizer), model_type="bert")).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    transformer = Transformer(str(tmp_path / "teacher_backbone"))
    SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"),
                                 Normalize()]).save(str(tmp_path / "teacher"))
    rows = [{k: r[k] for k in ("caption", "english", "language")} for r in toy_rows]
    _write_jsonl(tmp_path / "train.jsonl", rows)
    _write_jsonl(tmp_path / "test.jsonl", rows)
    out = tmp_path / "run"
    results = distill_script.main([
        "--teacher", str(tmp_path / "teacher"), "--student", str(tmp_path / "student"),
        "--dataset", str(tmp_path / "train.jsonl"), "--train_split", "train", "--eval_split",
        str(tmp_path / "test.jsonl"), "--method", "fd", "--output_dir", str(out), "--max_steps", "2",
        "--per_device_train_batch_size", "16", "--save_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true", "--use_cpu", "true",
    ])
    printed = capsys.readouterr().out
    assert "Translation retrieval" in printed and "s2t_acc" in printed
    assert all(f"| {lang} " in printed for lang in ("de", "fr"))
    saved = json.loads((out / "eval_results.json").read_text())
    assert set(saved["translation"]["student"]) == {"de", "fr", "mean"}  # English rows are the anchors
    assert 0.0 <= saved["translation"]["student"]["de"]["s2t_acc"] <= 1.0
    assert results["translation"]["student"]["mean"]["spread"] == saved["translation"]["student"]["mean"]["spread"]
