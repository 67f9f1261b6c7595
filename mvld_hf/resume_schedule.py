"""The one line a run resumed with another ``max_steps`` logs: the Trainer rebuilds the learning-rate schedule
over the new number of steps and restores only its position, so the learning rate jumps. A leaf module
(:func:`mvld_hf.checkpointing.resolve_checkpoint` calls it; it imports nothing of the package).
"""

from __future__ import annotations


def _learning_rate_at(args, max_steps: int, step: int) -> float | None:
    """The learning rate after ``step`` optimizer steps of ``args``' schedule over ``max_steps`` (what the Trainer
    builds: ``get_scheduler`` with ``args.get_warmup_steps``); None for a scheduler without a step formula."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer=optimizer,
                              num_warmup_steps=args.get_warmup_steps(max_steps), num_training_steps=max_steps,
                              scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    lambdas = getattr(scheduler, "lr_lambdas", None)
    return args.learning_rate * lambdas[0](step) if lambdas else None


def schedule_change(checkpoint: str, saved: dict, args) -> str | None:
    """One line when a run resumes ``checkpoint`` (written by a run of ``saved["max_steps"]`` steps) with another
    ``args.max_steps``: the Trainer rebuilds the learning-rate schedule over the new number of steps and restores
    only its position, so the learning rate jumps; the line gives the schedule it will follow and how to keep the
    old one. None when equal, unrecorded, or counted in epochs."""
    before, now, step = saved.get("max_steps"), getattr(args, "max_steps", None), saved.get("global_step")
    if not before or now is None or now <= 0 or before == now or step is None:
        return None
    if now <= step:
        return (f"resuming {checkpoint} (step {step}) with --max_steps {now}: the run already reached that step, so "
                f"nothing trains; the interrupted run had --max_steps {before}")
    old, new = _learning_rate_at(args, before, step), _learning_rate_at(args, now, step)
    end = _learning_rate_at(args, now, now)
    if old is None or new is None:
        rates = ""
    else:
        rates = (f": the learning rate at step {step + 1} is {new:.3g} instead of the interrupted run's {old:.3g}, "
                 f"and {end:.3g} at step {now}")
    kind = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    return (f"resuming {checkpoint} (step {step} of a run of --max_steps {before}) with --max_steps {now}: the "
            f"{kind} learning-rate schedule is recomputed over {now} steps{rates}; resume with --max_steps {before} "
            "to keep the interrupted run's schedule")
