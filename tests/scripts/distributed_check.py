"""Multi-process equivalence check, run by ``tests/test_distributed.py`` under

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
        tests/scripts/distributed_check.py WORKDIR

``WORKDIR`` holds what the test prepared: ``student/`` (a dropout-free tiny student), ``batches.pt`` (global
batches of token ids and teacher embeddings), ``tokenizer/`` and ``dataset/`` (for a short ``trainer.train()``).
Each rank

1. for every case of :data:`CASES`, wraps a fresh copy of the student the way the Trainer does
   (``accelerator.prepare_model``: DDP over gloo), runs ``trainer.compute_loss`` on *its slice* of each global
   batch and back-propagates (DDP averages the gradients over ranks), and records loss, flattened gradient and
   DR queue after every step;
2. runs ``trainer.train()`` for a few steps with sequential sampling and records the logged losses, the final
   parameters and the queue;

and writes everything to ``WORKDIR/rank{R}.pt``. The test computes the same with one process on the whole
global batch (:func:`run_cases`, :func:`train_run` are shared) and compares.
"""

from __future__ import annotations

import os
import sys

import torch

from mvld_hf import DistillationArguments, DistillationTrainer, MultilingualTextTower

# (name, method, anchor, extra arguments, indices of the global batches run one after the other)
CASES = [
    ("fd", "fd", "text", {}, [0]),
    ("fd_image_norm", "fd", "image", {"normalize_features": True}, [0]),
    ("ed", "ed", "text", {}, [0]),
    ("sd", "sd", "text", {}, [0]),
    ("sd_image", "sd", "image", {}, [0]),
    ("mcl", "mcl", "text", {}, [0]),
    ("mcl_image", "mcl", "image", {}, [0]),
    # three steps through a queue of two global batches: empty, half full, full, then wrapping around
    ("dr", "dr", "text", {}, [0, 1, 2]),
    ("dr_image_no_positive", "dr", "image", {"include_positive": False}, [0, 1, 2]),
    ("combination", "dr:1.0,ed:0.5,fd:0.5,sd:0.3,mcl:0.2", "text", {}, [0, 1]),
]
QUEUE_BATCHES = 2  # queue_size = QUEUE_BATCHES x global batch
TRAIN_STEPS = 3
TRAIN_GLOBAL_BATCH = 16  # rows of the toy dataset per optimizer step, over all ranks


def make_args(output_dir, method, anchor, per_device_batch, global_batch, **extra):
    return DistillationArguments(
        output_dir=output_dir, method=method, anchor=anchor, per_device_train_batch_size=per_device_batch,
        queue_size=QUEUE_BATCHES * global_batch, report_to=[], save_strategy="no", disable_tqdm=True, seed=0,
        ddp_find_unused_parameters=False, use_cpu=True, **extra)


def _slice(batch: dict, rank: int, world: int) -> dict:
    n = next(iter(batch.values())).shape[0] // world
    return {k: v[rank * n:(rank + 1) * n] for k, v in batch.items()}


def run_cases(workdir: str, rank: int = 0, world: int = 1) -> dict:
    """Loss, flattened gradient and queue after each step of each case, computed on this rank's slice."""
    batches = torch.load(os.path.join(workdir, "batches.pt"))
    global_batch = next(iter(batches[0].values())).shape[0]
    results = {}
    for name, method, anchor, extra, steps in CASES:
        student = MultilingualTextTower.from_pretrained(os.path.join(workdir, "student"))
        args = make_args(os.path.join(workdir, "out"), method, anchor, global_batch // world, global_batch, **extra)
        trainer = DistillationTrainer(model=student, args=args, data_collator=lambda rows: rows)
        model = trainer.accelerator.prepare_model(student) if world > 1 else student
        model.train()
        record = {"wrapper": type(model).__name__, "steps": []}
        for index in steps:
            student.zero_grad(set_to_none=True)
            loss = trainer.compute_loss(model, _slice(batches[index], rank, world))
            loss.backward()
            grads = torch.cat([p.grad.flatten() for p in student.parameters()])
            queue = None if trainer.queue is None else (trainer.queue.keys().clone(), trainer.queue.ptr)
            record["steps"].append({"loss": loss.detach().clone(), "grads": grads.clone(), "queue": queue})
        results[name] = record
    return results


def train_run(workdir: str, per_device_batch: int, global_batch: int, dataset=None) -> dict:
    """A short ``trainer.train()`` (sequential sampling, so the global batches equal a 1-process run's)."""
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(os.path.join(workdir, "tokenizer"))
    if dataset is None:
        dataset = datasets.load_from_disk(os.path.join(workdir, "dataset"))
    student = MultilingualTextTower.from_pretrained(os.path.join(workdir, "student"))
    args = make_args(os.path.join(workdir, "train_out"), "dr+mcl", "text", per_device_batch, global_batch,
                     max_steps=TRAIN_STEPS, logging_steps=1, learning_rate=1e-2, train_sampling_strategy="sequential")
    trainer = DistillationTrainer(model=student, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    logs = [{k: v for k, v in entry.items() if k.startswith(("loss", "dr_", "mcl_"))}
            for entry in trainer.state.log_history if "loss" in entry]
    params = torch.cat([p.detach().flatten() for p in student.parameters()])
    return {"logs": logs, "params": params, "queue": trainer.queue.keys().cpu().clone(), "ptr": trainer.queue.ptr,
            "world_size": trainer.args.world_size}


def shared_precompute_run(workdir: str, share: bool) -> dict:
    """``precompute_teacher_embeddings(share_across_ranks=share)`` of ``raw_dataset/`` (backed by files) and of an
    in-memory copy, with the conftest's tiny teacher; returns the columns and how many captions this process
    embedded."""
    import datasets
    from transformers import AutoTokenizer

    from mvld_hf import precompute_teacher_embeddings
    from mvld_hf.testing import CountingTeacher, tiny_clip_teacher

    tokenizer = AutoTokenizer.from_pretrained(os.path.join(workdir, "tokenizer"))
    teacher = CountingTeacher(tiny_clip_teacher(tokenizer, projection_dim=16))
    raw = datasets.load_from_disk(os.path.join(workdir, "raw_dataset"))
    on_disk = precompute_teacher_embeddings(raw, teacher, batch_size=8, share_across_ranks=share)
    from_disk = teacher.texts
    in_memory = precompute_teacher_embeddings(datasets.Dataset.from_dict(raw.to_dict()), teacher, batch_size=8,
                                              share_across_ranks=share)
    return {"dataset": on_disk, "disk": torch.tensor(on_disk["teacher_text_embeds"]),
            "english": list(on_disk["english"]), "memory": torch.tensor(in_memory["teacher_text_embeds"]),
            "memory_fingerprint": in_memory._fingerprint,
            "texts_embedded": (from_disk, teacher.texts - from_disk)}


def stream_run(workdir: str) -> dict:
    """Two steps on a stream embedded in the step (``TeacherEmbeddedStream``): the rows this rank read and how
    many captions its own teacher embedded."""
    import datasets
    from transformers import AutoTokenizer

    from mvld_hf import DistillationCollator, precompute_teacher_embeddings
    from mvld_hf.testing import CountingTeacher, tiny_clip_teacher

    tokenizer = AutoTokenizer.from_pretrained(os.path.join(workdir, "tokenizer"))
    teacher = CountingTeacher(tiny_clip_teacher(tokenizer, projection_dim=16))
    raw = datasets.load_from_disk(os.path.join(workdir, "raw_dataset"))
    stream = precompute_teacher_embeddings(raw.to_iterable_dataset(num_shards=4), teacher)
    args = make_args(os.path.join(workdir, "stream_out"), "dr+mcl", "text", 4, 8, max_steps=2)
    seen = []

    class Recording(DistillationCollator):
        def __call__(self, features):
            seen.extend(f["caption"] for f in features)
            return super().__call__(features)

    trainer = DistillationTrainer(model=MultilingualTextTower.from_pretrained(os.path.join(workdir, "student")),
                                  args=args, train_dataset=stream, processing_class=tokenizer,
                                  data_collator=Recording(tokenizer, args))
    trainer.train()
    return {"captions": seen, "texts_embedded": teacher.texts, "steps": trainer.state.global_step}


def main(workdir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    # TrainingArguments sets up the process group (gloo on CPU) from the launcher's environment
    results = {}
    probe = make_args(os.path.join(workdir, "out"), "fd", "text", 1, 1)
    rank, world = probe.process_index, probe.world_size
    assert dist.is_initialized() and world == dist.get_world_size() == 2, (world, dist.is_initialized())
    results["cases"] = run_cases(workdir, rank, world)
    results["train"] = train_run(workdir, TRAIN_GLOBAL_BATCH // world, TRAIN_GLOBAL_BATCH)
    # each rank embeds half of the rows, all end with the full column, and train as the one-process run does
    shared = results["shared_precompute"] = shared_precompute_run(workdir, share=True)
    results["shared_train"] = train_run(workdir, TRAIN_GLOBAL_BATCH // world, TRAIN_GLOBAL_BATCH,
                                        dataset=shared.pop("dataset"))
    results["stream"] = stream_run(workdir)
    results["rank"], results["world_size"], results["backend"] = rank, world, dist.get_backend()
    torch.save(results, os.path.join(workdir, f"rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
