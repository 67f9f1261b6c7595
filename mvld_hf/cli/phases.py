"""How long a run takes: its phases (world, teacher, tokenizer, precompute, training, evaluation), an estimate of
each printed when the job starts, each phase's measured time printed when it ends, and all of them recorded in
the run's ``mvld_run.json`` (``phase_seconds``, ``phase_estimates``), so one run gives the README's phase table.

The estimates scale :data:`QUIET_SECONDS` (measured on a quiet 2-core CPU) by the run's size and by what the
mvld_hf cache already holds (the world and the offline teacher are built once, then loaded in seconds; the
teacher's evaluation is reused, see ``--teacher_eval_cache``). This module imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time

#: Seconds per unit of each phase on a quiet 2-core CPU (the offline demo's defaults: 3000 + 600 scenes, 13
#: languages, teacher 500 steps, student 2 x 128 at batch 128); where each figure comes from:
#: ``benchmarks/RESULTS.md``, "Measured results the code refers to". Replace them with a quiet run's
#: ``phase_seconds`` (``mvld_run.json``).
QUIET_SECONDS = {
    "world": 25.0 / 3600,  # per scene built (train + test)
    "teacher": 284.0 / 500,  # per teacher training step (batch 128), its evaluation included
    "tokenizer": 5.0 / 78_000,  # per training caption (BPE training, student built)
    "precompute": 9.0 / 78_000,  # per training caption the teacher embeds
    "training": 260.0 / (1500 * 128),  # per caption trained on (steps x global batch)
    "evaluation": 78.0 / 600,  # per held-out scene (13 languages x 2 captions), teacher and student
}
#: a phase whose result the cache already holds: loading it back
CACHED_SECONDS = {"world": 2.0, "teacher": 2.0}
#: the student's evaluation is about this share of the evaluation when the teacher's is reused
STUDENT_EVAL_SHARE = 0.6


def _teacher_cached(cache_dir: str, seed: int, steps: int, train_scenes: int) -> bool:
    """Whether a complete offline teacher of this world and recipe is in the cache (its ``teacher_info.json``)."""
    for info_path in glob.glob(os.path.join(cache_dir, "teacher-v*-*", "teacher_info.json")):
        try:
            with open(info_path, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        hparams = info.get("hparams", {})
        if hparams.get("seed") == seed and hparams.get("steps") == steps and info.get("train_images") == train_scenes:
            return True
    return False


def offline_estimates(*, seed: int, train_scenes: int, test_scenes: int, languages: int, teacher_steps: int,
                      max_steps: int, global_batch: int, max_train_samples: int | None, evaluate: bool,
                      world_cached: bool, teacher_cached: bool, teacher_eval_cached: bool = False) -> dict:
    """Estimated seconds per phase of an offline run on a quiet 2-core CPU, and what the cache saves."""
    captions = train_scenes * 2 * languages
    if max_train_samples:
        captions = min(captions, max_train_samples)
    scale = languages / 13  # the evaluation's captions per scene
    estimates = {
        "world": CACHED_SECONDS["world"] if world_cached else QUIET_SECONDS["world"] * (train_scenes + test_scenes),
        "teacher": CACHED_SECONDS["teacher"] if teacher_cached else QUIET_SECONDS["teacher"] * teacher_steps,
        "tokenizer": QUIET_SECONDS["tokenizer"] * captions,
        "precompute": QUIET_SECONDS["precompute"] * captions,
        "training": QUIET_SECONDS["training"] * max(max_steps, 0) * global_batch,
        "evaluation": QUIET_SECONDS["evaluation"] * test_scenes * scale
        * (STUDENT_EVAL_SHARE if teacher_eval_cached else 1.0) if evaluate else 0.0,
    }
    return {name: round(seconds, 1) for name, seconds in estimates.items()}


def duration(seconds: float) -> str:
    """``42 s``, ``4.3 min``, ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def busy_note() -> str:
    """How this machine's load bears on the estimates (they hold for a quiet one)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return "longer on a busy machine"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load > cores:
        return f"this machine's load is {load:.1f} on {cores} cores: expect up to {load / cores:.0f}x longer"
    return "longer on a busy machine"


class PhaseClock:
    """Times the phases of a run; prints the plan and each phase's time when ``show`` (the main process)."""

    def __init__(self, estimates: dict | None = None, notes: dict | None = None, show: bool = True, printer=print):
        self.estimates = dict(estimates or {})
        self.notes = dict(notes or {})
        self.seconds: dict[str, float] = {}
        self.show = show
        self.print = printer

    def announce(self, title: str = "this run") -> None:
        """The phases to come, each with its estimate (and why: cached, steps, scenes), and the total."""
        if not self.show or not self.estimates:
            return
        total = sum(self.estimates.values())
        self.print(f"{title}: {len(self.estimates)} phases, about {duration(total)} on a quiet 2-core CPU "
                   f"({busy_note()}):")
        for name, seconds in self.estimates.items():
            note = f"  ({self.notes[name]})" if self.notes.get(name) else ""
            self.print(f"  {name:<11} ~{duration(seconds)}{note}")

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 1)
        if self.show:
            estimate = self.estimates.get(name)
            told = f" (estimated ~{duration(estimate)})" if estimate is not None else ""
            self.print(f"[phase] {name}: {duration(self.seconds[name])}{told}", flush=True)

    def record(self) -> dict:
        """What ``mvld_run.json`` keeps: the measured seconds of each phase run so far, and the estimates."""
        out = {"phase_seconds": dict(self.seconds)}
        if self.estimates:
            out["phase_estimates"] = dict(self.estimates)
        return out

    def summary(self) -> str:
        """One line: each phase's measured time and the total."""
        parts = ", ".join(f"{name} {duration(s)}" for name, s in self.seconds.items())
        return f"phases: {parts}; total {duration(sum(self.seconds.values()))}"


@contextlib.contextmanager
def no_phase(name: str):
    """Stands in for :meth:`PhaseClock.phase` when nothing is timed."""
    yield


def offline_clock(data_args, args, teacher_eval_cached: bool = False) -> PhaseClock:
    """The clock of an offline run, its estimates scaled by the run's flags and by what the cache holds."""
    import inspect

    from mvld_hf.synthetic import teacher as offline_teacher
    from mvld_hf.synthetic import world as offline_world

    train_scenes = data_args.world_train_scenes or offline_world.DEFAULT_TRAIN_SCENES
    test_scenes = data_args.world_test_scenes or offline_world.DEFAULT_TEST_SCENES
    languages = len(data_args.languages or offline_world.LANGUAGES)
    teacher_steps = data_args.teacher_steps or \
        inspect.signature(offline_teacher.train_english_teacher).parameters["steps"].default
    folder = offline_world.world_folder(data_args.world_seed, train_scenes, test_scenes, data_args.languages)
    world_cached = os.path.isdir(folder)
    teacher_cached = world_cached and _teacher_cached(offline_world.default_cache_dir(), data_args.world_seed,
                                                      teacher_steps, train_scenes)
    batch = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    steps = args.max_steps if args.max_steps > 0 else None
    if steps is None:  # epochs: the training set's batches per epoch
        rows = min(train_scenes * 2 * languages, data_args.max_train_samples or float("inf"))
        steps = int(rows // batch * args.num_train_epochs)
    estimates = offline_estimates(
        seed=data_args.world_seed, train_scenes=train_scenes, test_scenes=test_scenes, languages=languages,
        teacher_steps=teacher_steps, max_steps=steps, global_batch=batch, max_train_samples=data_args.max_train_samples,
        evaluate=bool(data_args.eval_split), world_cached=world_cached, teacher_cached=teacher_cached,
        teacher_eval_cached=teacher_eval_cached)
    notes = {
        "world": f"cached in {folder}" if world_cached else f"{train_scenes} + {test_scenes} scenes, then cached",
        "teacher": "cached" if teacher_cached else f"{teacher_steps} steps of the English CLIP, then cached",
        "tokenizer": "BPE on the training captions, the student built",
        "precompute": "the teacher embeds the training captions",
        "training": f"{steps} steps x {batch} captions",
        "evaluation": f"{test_scenes} held-out scenes"
                      + (", the teacher's evaluation may be reused" if data_args.eval_split else ""),
    }
    if not data_args.eval_split:
        estimates.pop("evaluation")
    return PhaseClock(estimates, notes, show=args.process_index == 0)


def phase_table(record: dict) -> str:
    """A markdown table of a run's phases from its ``mvld_run.json``: estimate, measured time, share of the total
    (``python -m mvld_hf.cli.phases outputs/distill-offline/mvld_run.json`` prints it for the README)."""
    seconds = record.get("phase_seconds") or {}
    estimates = record.get("phase_estimates") or {}
    total = sum(seconds.values()) or 1.0
    rows = ["| phase | estimated | measured | share |", "|---|---|---|---|"]
    for name, measured in seconds.items():
        estimate = f"~{duration(estimates[name])}" if name in estimates else "-"
        rows.append(f"| {name} | {estimate} | {duration(measured)} | {100 * measured / total:.0f}% |")
    rows.append(f"| **total** | ~{duration(sum(estimates.values()))} | {duration(sum(seconds.values()))} | |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    for path in sys.argv[1:] or ["outputs/distill-offline/mvld_run.json"]:
        with open(path, encoding="utf-8") as f:
            print(phase_table(json.load(f)))
