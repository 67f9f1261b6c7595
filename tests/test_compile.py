"""``torch_compile=True`` (what the paper configs set for CUDA): DR's queue and resume work through the compiled
student.

The backend here is dynamo's ``eager`` one: it traces the student exactly as inductor would (graph breaks, the
``OptimizedModule`` wrapper the Trainer trains and saves through) but runs the traced graph without generating
code, so the test takes seconds. Inductor itself on this CPU compiled the same tiny run in 209 s (checked by hand,
2026-12-04: resume gave the same weights and queue as the uninterrupted compiled run; its dropout draws other
random numbers than eager's, so its losses differ from an eager run's); the GPU's figures come from
benchmarks/bench_gpu.py --compile.
"""

import torch

from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
from mvld_hf.testing import tiny_student
from tests.helpers import training_args


def _train(tmp_path, tokenizer, dataset, name, compile_, resume=None):
    extra = {"torch_compile": True, "torch_compile_backend": "eager"} if compile_ else {}
    args = training_args(tmp_path / name, method="dr", per_device_train_batch_size=8, max_steps=4, queue_size=16,
                         save_strategy="steps", save_steps=2, logging_steps=1, **extra)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16, seed=5), args=args, train_dataset=dataset,
                                  processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_compiled_dr_with_queue_and_resume_matches_eager(tmp_path, tokenizer, teacher, toy_dataset):
    dataset = precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher)
    eager = _train(tmp_path, tokenizer, dataset, "eager", compile_=False)
    compiled = _train(tmp_path, tokenizer, dataset, "compiled", compile_=True)
    assert type(compiled.model_wrapped).__name__ == "OptimizedModule"  # it really trained a compiled module

    def losses(trainer):
        return [e["loss_dr"] for e in trainer.state.log_history if "loss_dr" in e]

    assert len(losses(compiled)) == 4 and losses(compiled) == losses(eager)
    for a, b in zip(compiled.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(compiled.queue.keys(), eager.queue.keys()) and compiled.queue.ptr == eager.queue.ptr
    checkpoint = tmp_path / "compiled" / "out" / "checkpoint-2"
    resumed = _train(tmp_path, tokenizer, dataset, "compiled", compile_=True, resume=str(checkpoint))
    assert losses(resumed)[-2:] == losses(compiled)[-2:]
    for a, b in zip(resumed.model.parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(resumed.queue.keys(), compiled.queue.keys())
