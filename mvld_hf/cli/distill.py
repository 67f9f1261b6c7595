"""Distil a multilingual text student into a frozen English vision-language teacher.

    accelerate launch examples/distill.py                       # offline world: no Hub needed
    mvld-distill --max_steps 100                                # the same, installed console script
    accelerate launch examples/distill.py configs/clip-l14_xlmr-base_dr.yaml   # a paper setup (needs the Hub)
    python examples/distill.py configs/clip-l14_xlmr-base_dr.yaml --bf16 false --max_steps 100  # overrides
    python examples/distill.py --method ed --num_train_epochs 2 --output_dir outputs/ed

With no arguments (or ``--teacher offline``) it runs the offline world shipped with mvld_hf: rendered scenes
with captions in 13 languages, an English-only CLIP trained on them (cached after the first run), a small
XLM-R-style student with a tokenizer trained on the captions, DR distillation, then per-language retrieval
of the student (paired with the teacher's image tower) beside the teacher's English retrieval. Outputs in
``--output_dir``: the checkpoint, ``eval_results.json``, ``retrieval_per_language.png`` and a table.

The run is set up by the modules beside this one: :mod:`.arguments` (flags, config files, checks before any
work), :mod:`.offline` (the offline world), :mod:`.hub_data` (Hub or local models and data) and :mod:`.reports`
(run record, evaluation reports); this module parses, dispatches and trains.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time

from mvld_hf.run_record import RUN_RECORD, write_run_record

from .arguments import (
    OFFLINE,
    OFFLINE_TRAINING_DEFAULTS,
    CliError,
    DataArguments,
    ModelArguments,
    check_flags,
    check_resume,
    parse_args,
    read_config,
    validate_cli,
)
from .phases import PhaseClock, offline_clock
from .precheck import precheck, print_summary

#: importable from here (tests and benchmarks use these names)
__all__ = ["OFFLINE", "OFFLINE_TRAINING_DEFAULTS", "CliError", "DataArguments", "ModelArguments", "check_flags",
           "check_resume", "console_main", "cpu_threads", "main", "one_line_errors", "parse_args", "read_config",
           "validate_cli"]

logger = logging.getLogger("mvld_hf.distill")


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers and ``kill`` send) during a run: handled like Ctrl-C."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While inside, SIGTERM raises :class:`Terminated` in this process (a ``KeyboardInterrupt``: training stops,
    the run lock is released, the last checkpoint and the resume command are printed) instead of ending it
    silently. Forked children (DataLoader workers) keep the default: they end as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked worker: end it as SIGTERM always did
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def one_line_errors(main):
    """Errors end ``main`` with one line, ``error: <cause and fix>``, instead of a traceback; a bare ``--debug``
    flag (TrainingArguments' ``--debug <option>`` is left alone) re-raises them with the traceback. Ctrl-C and
    SIGTERM print the last complete checkpoint and the command that resumes from it (exit status 130 / 143)."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None):
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = [i for i, a in enumerate(argv) if a == "--debug" and (i + 1 == len(argv) or argv[i + 1][:2] == "--")]
        for i in reversed(debug):
            del argv[i]
        try:
            with sigterm_as_interrupt():
                return main(argv)
        except Exception as err:  # every error of a run is reported the same way
            if debug:
                raise
            cause = " ".join(str(err).split()) or "no message"
            if not isinstance(err, CliError):
                cause = f"{type(err).__name__}: {cause}"
            raise SystemExit(f"error: {cause}\n(run with --debug for the traceback)") from None
        except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM: where training stands and the command that resumes it
            if debug:
                raise
            from .arguments import interrupted_message

            terminated = isinstance(err, Terminated)
            print(f"\n{interrupted_message(argv, 'SIGTERM' if terminated else 'Ctrl-C')}", file=sys.stderr)
            raise SystemExit(143 if terminated else 130) from None

    return wrapper


def cpu_threads(world_size: int) -> int:
    """Torch threads per process on a CPU: ``$MVLD_HF_NUM_THREADS`` when set (e.g. 1 beside another job, so
    neither oversubscribes the cores), else the cores shared among the processes (`accelerate launch` sets
    OMP_NUM_THREADS=1 when unset, which would leave cores idle)."""
    value = os.environ.get("MVLD_HF_NUM_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise CliError(f"MVLD_HF_NUM_THREADS must be a positive integer, got {value!r}")
        return int(value)
    return max(1, (os.cpu_count() or 1) // max(1, world_size))


def busy_machine_warning(threads: int, load: float | None = None, cores: int | None = None) -> str | None:
    """A warning when the machine's 1-minute load exceeds its cores (other jobs hold them): torch's ``threads``
    would then oversubscribe the cores and every phase slows down several times. Names the setting to use."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform
            return None
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load <= cores or threads <= 1:  # quiet, or already one thread: nothing to change
        return None
    return (f"the machine's load ({load:.1f}) exceeds its {cores} core(s): other jobs are running, and {threads} "
            "torch thread(s) per process oversubscribe the cores (every phase slows down several times). Set "
            "MVLD_HF_NUM_THREADS=1 (e.g. `MVLD_HF_NUM_THREADS=1 mvld-distill ...`) or run when the machine is quiet")


@one_line_errors
def main(argv: list[str] | None = None) -> dict:
    argv, stop = precheck(list(sys.argv[1:] if argv is None else argv))  # before torch/transformers are imported
    if stop is not None:
        print(stop)
        return {}
    if "-h" in argv or "--help" in argv:
        print_summary()  # what the command does and the flags most runs need, at once; the full list follows
    from transformers import set_seed

    import mvld_hf
    from mvld_hf import DistillationTrainer, precompute_teacher_embeddings

    from .hub_data import hub_setup
    from .offline import offline_setup
    from .reports import evaluate, run_record

    mvld_hf.load_api()  # the Auto classes registered (deferred when the console script started)
    from mvld_hf.losses.registry import load_method_modules

    load_method_modules()  # methods of one's own ($MVLD_HF_METHODS) are known before --method is parsed
    model_args, data_args, args = parse_args(argv)
    validate_cli(model_args, data_args, args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if args.should_log else logging.WARNING)
    start = time.perf_counter()
    if args.device.type == "cpu":
        import torch

        threads = cpu_threads(args.world_size)
        torch.set_num_threads(threads)
        args.dataloader_pin_memory = False  # nothing to pin to without an accelerator (torch warns otherwise)
        busy = busy_machine_warning(threads)
        if busy:
            logger.warning(busy)
    set_seed(args.seed)
    check_flags(model_args, data_args, args)
    offline = model_args.teacher == OFFLINE
    if offline:
        clock = offline_clock(data_args, args)
        clock.announce("mvld-distill, offline world")
        train, evaluation, teacher, tokenizer, student = offline_setup(model_args, data_args, args, clock=clock)
    else:
        clock = PhaseClock(show=args.process_index == 0)
        with clock.phase("setup"):  # teacher, student and data from the Hub or local folders
            train, evaluation, teacher, tokenizer, student = hub_setup(model_args, data_args, args)
    check_resume(args, student)
    batch = args.per_device_train_batch_size * args.world_size
    if not data_args.streaming and args.dataloader_drop_last and len(train) < batch:
        raise CliError(f"the training set has {len(train)} rows, fewer than one batch ({batch}) with "
                       "--dataloader_drop_last: raise --max_train_samples or lower --per_device_train_batch_size")

    if args.anchor == "text" and args.image_column in (train.column_names or []):
        train = train.remove_columns(args.image_column)  # text anchors: no image is read, don't rewrite them
    if args.teacher_text_column not in (train.column_names or []):
        # a stream is embedded in the training step of each rank (DataLoader workers only read and tokenize); a
        # map-style dataset is split over the ranks, each embedding its part (every rank calls this: a collective)
        with clock.phase("precompute"):
            train = precompute_teacher_embeddings(train, teacher, anchor=args.anchor, batch_size=1000,
                                                  english_column=args.english_column, image_column=args.image_column,
                                                  text_output_column=args.teacher_text_column,
                                                  image_output_column=args.teacher_image_column,
                                                  cache_dir=data_args.teacher_cache_dir, share_across_ranks=True)
    with clock.phase("training"):
        trainer = DistillationTrainer(model=student, args=args, train_dataset=train, processing_class=tokenizer)
        trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        try:
            trainer.save_model(args.output_dir)
        except OSError as err:  # a full disk (DiskFullError): the exact command that resumes
            from mvld_hf.checkpointing import DiskFullError

            from .arguments import resume_command

            if not isinstance(err, DiskFullError) or "resume from it" not in str(err):
                raise
            raise CliError(f"{err.strerror}. Resume with: {resume_command(argv)}") from err
    record = None
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(args.output_dir)
        record = run_record(model_args, data_args, args, train, teacher, trainer.state.global_step)
        write_run_record(args.output_dir, {**record, **clock.record()})
    results = {}
    if evaluation is None:
        logger.info("no evaluation (--eval_split is empty)")
    elif trainer.is_world_process_zero():
        vqa = None
        if offline and data_args.eval_vqa:
            from mvld_hf.synthetic import build_vqa

            vqa = build_vqa(seed=data_args.world_seed, num_scenes=len(set(evaluation["image_id"])),
                            languages=data_args.languages)
        with clock.phase("evaluation"):
            results = evaluate(student, tokenizer, teacher, evaluation, args, data_args, args.output_dir, vqa=vqa)
    if record is not None:
        write_run_record(args.output_dir, {**record, **clock.record()})  # the evaluation's time too
        print(f"\n{clock.summary()} (recorded in {os.path.join(args.output_dir, RUN_RECORD)})")
        if offline and evaluation is not None:
            print(held_out_line(data_args))
    logger.info("done in %.0f s; outputs in %s", time.perf_counter() - start, args.output_dir)
    return results


def held_out_line(data_args: DataArguments) -> str:
    """Where the offline run's held-out images and captions are, and the call that returns them."""
    from mvld_hf.synthetic import world_folder

    flags = {"seed": data_args.world_seed, "num_train_scenes": data_args.world_train_scenes,
             "num_test_scenes": data_args.world_test_scenes, "languages": data_args.languages}
    given = ", ".join(f"{k}={v!r}" for k, v in flags.items() if v is not None and (k != "seed" or v))
    folder = world_folder(**{k: v for k, v in flags.items() if v is not None})
    return (f"held-out data (images + captions): mvld_hf.synthetic.build_world({given})[\"test\"], saved in "
            f"{os.path.join(folder, 'test')}")


def console_main() -> int:
    """The ``mvld-distill`` console script (``pip install`` puts it on PATH); exit status 0 on success."""
    main()
    return 0


if __name__ == "__main__":
    sys.exit(console_main())
