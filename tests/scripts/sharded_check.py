"""A DR run with a sharded optimizer (DeepSpeed ZeRO-2) over two CPU ranks (gloo), with a resume, run by
``tests/test_distributed.py`` under

    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml --num_processes 2 \
        tests/scripts/sharded_check.py WORKDIR NAME

``WORKDIR`` holds what the test prepared (``student/``, ``tokenizer/``, ``dataset/``, see
``distributed_check.py``). Each rank

1. trains ``dr+mcl`` for :data:`STEPS` steps with sequential sampling, saving a checkpoint (model, optimizer
   shards, DR queue) half way, and records the logged losses, the final parameters and the queue;
2. trains again from that checkpoint (``resume_from_checkpoint``) to the same step and records the same, and
   how many steps it ran;

and writes ``WORKDIR/NAME-rank{R}.pt``. The test runs :func:`run` in one process and compares.

``use_cpu`` stays unset here: accelerate runs DeepSpeed only when it is (``use_cpu=True`` turns the launch into
plain DDP over CPU processes). FSDP cannot be checked this way: accelerate (1.16) never turns a CPU launch into
FSDP, an FSDP config runs as plain DDP there.
"""

from __future__ import annotations

import os
import sys

import torch

STEPS = 4
SAVE_AT = 2
GLOBAL_BATCH = 16


def _train(workdir: str, output_dir: str, per_device_batch: int, resume: str | None = None) -> dict:
    import datasets
    from transformers import AutoTokenizer, TrainerCallback

    from mvld_hf import DistillationArguments, DistillationTrainer, MultilingualTextTower

    tokenizer = AutoTokenizer.from_pretrained(os.path.join(workdir, "tokenizer"))
    dataset = datasets.load_from_disk(os.path.join(workdir, "dataset"))
    student = MultilingualTextTower.from_pretrained(os.path.join(workdir, "student"))
    args = DistillationArguments(
        output_dir=output_dir, method="dr+mcl", anchor="text", per_device_train_batch_size=per_device_batch,
        queue_size=2 * GLOBAL_BATCH, report_to=[], disable_tqdm=True, seed=0, ddp_find_unused_parameters=False,
        max_steps=STEPS, logging_steps=1, learning_rate=1e-2, train_sampling_strategy="sequential",
        save_strategy="steps", save_steps=SAVE_AT)

    class CountSteps(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            CountSteps.steps += 1

    trainer = DistillationTrainer(model=student, args=args, train_dataset=dataset, processing_class=tokenizer,
                                  callbacks=[CountSteps()])
    trainer.train(resume_from_checkpoint=resume)
    logs = {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}
    model = trainer.accelerator.unwrap_model(trainer.model)
    state = trainer.accelerator.get_state_dict(trainer.model)  # the full weights, on every rank here
    params = torch.cat([state[name].detach().float().flatten().cpu() for name, _ in model.named_parameters()])
    return {"logs": logs, "params": params, "steps_run": CountSteps.steps,
            "queue": trainer.queue.keys().cpu().clone(), "ptr": trainer.queue.ptr,
            "world_size": trainer.args.world_size, "wrapper": type(trainer.model_wrapped).__name__,
            "fsdp": bool(trainer.is_fsdp_enabled), "deepspeed": bool(trainer.is_deepspeed_enabled)}


def run(workdir: str, name: str, world: int = 1) -> dict:
    out = os.path.join(workdir, f"{name}-out")
    full = _train(workdir, out, GLOBAL_BATCH // world)
    resumed = _train(workdir, os.path.join(workdir, f"{name}-resumed"), GLOBAL_BATCH // world,
                     resume=os.path.join(out, f"checkpoint-{SAVE_AT}"))
    return {"full": full, "resumed": resumed}


def main(workdir: str, name: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    results = run(workdir, name, world=int(os.environ.get("WORLD_SIZE", "1")))
    rank = dist.get_rank() if dist.is_initialized() else 0
    results["world_size"] = dist.get_world_size() if dist.is_initialized() else 1
    torch.save(results, os.path.join(workdir, f"{name}-rank{rank}.pt"))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    main(sys.argv[1], sys.argv[2])
