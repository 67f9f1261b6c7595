"""A study's runner: every unfinished cell run as its own ``mvld-distill`` process (``python -m
mvld_hf.cli.distill``, the installed package: a study runs from a wheel), cells shared between runners through
per-cell locks (:func:`claim_cell`), the cells' ``eval_results.json`` read back (:func:`collect`), then the
analysis and the report (:func:`run_study`); :func:`main` is the ``mvld-study`` command."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from ..losses.registry import METHODS_ENV, load_method_modules
from ..run_lock import process_alive, process_start
from .analysis import compute_findings
from .report import write_report
from .spec import CELL_FILE, EVAL_FILE, SETTING_DEFAULTS, Cell, expand_grid, load_spec, write_json

#: how a cell runs by default: ``mvld-distill`` of the installed package, in this Python
DISTILL_COMMAND = (sys.executable, "-m", "mvld_hf.cli.distill")


def cell_done(cell: Cell, folder: str) -> bool:
    """Whether ``folder`` holds a finished run of exactly this cell."""
    try:
        with open(os.path.join(folder, CELL_FILE), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return False
    return (record.get("status") == "done" and record.get("fingerprint") == cell.fingerprint
            and os.path.isfile(os.path.join(folder, EVAL_FILE)))


LOCK_FILE = ".running"


def claim_cell(folder: str) -> bool:
    """Take ``folder``'s lock for this process; False when a live process of this machine holds it (another
    runner of the same study is running that cell). A lock left by a dead process, or whose pid now belongs to
    another process (the lock records the holder's start time: :func:`mvld_hf.run_lock.process_alive`), is taken
    over."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path, encoding="utf-8") as f:
                    pid, _, start = f.read().strip().partition(" ")  # "pid start" ("pid" from older runners)
                holder, start = int(pid or 0), start or None
            except (OSError, ValueError):
                holder, start = 0, None
            if holder and holder != os.getpid() and process_alive(holder, start):
                return False
            try:
                os.remove(path)  # stale: its runner was killed
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {process_start(os.getpid()) or ''}".strip())
        return True
    return False


def release_cell(folder: str) -> None:
    try:
        os.remove(os.path.join(folder, LOCK_FILE))
    except FileNotFoundError:
        pass


def run_cells(cells: Sequence[Cell], output_dir: str, command: Sequence[str],
              log: Callable[[str], None] = print, env: dict | None = None) -> list[dict]:
    """Run every unfinished cell as ``command + cell.argv(folder)`` (a subprocess, output in the cell's
    ``log.txt``); finished cells are skipped, a cell whose folder holds an unfinished attempt starts over
    (``--overwrite_output_dir true``). Several runners of one study (e.g. two processes of one thread each on a
    2-core machine) share the work: a cell another live runner is running is passed over (status
    ``running elsewhere``; rerun the study once they are done to report every cell). Returns one record per
    cell: settings, fingerprint, folder, status (``done``/``skipped``/``failed``/``running elsewhere``), wall
    seconds. ``env``: the subprocesses' environment (default: this process's)."""
    records = []
    for i, cell in enumerate(cells, 1):
        folder = os.path.join(output_dir, "cells", cell.name)
        record = {"name": cell.name, "fingerprint": cell.fingerprint, "settings": cell.settings,
                  "folder": folder}
        if cell_done(cell, folder):
            with open(os.path.join(folder, CELL_FILE), encoding="utf-8") as f:
                record["wall_s"] = json.load(f).get("wall_s")
            log(f"[{i}/{len(cells)}] {cell.name}: finished earlier, skipped")
            records.append({**record, "status": "skipped"})
            continue
        retry = os.path.isfile(os.path.join(folder, CELL_FILE))  # an earlier attempt (killed or failed)
        if not claim_cell(folder):
            log(f"[{i}/{len(cells)}] {cell.name}: running in another runner, passed over")
            records.append({**record, "status": "running elsewhere"})
            continue
        if cell_done(cell, folder):  # finished by another runner since the check above
            release_cell(folder)
            log(f"[{i}/{len(cells)}] {cell.name}: finished earlier, skipped")
            records.append({**record, "status": "skipped"})
            continue
        # the cells share one teacher: its own evaluation is computed once per held-out set (not fingerprinted)
        argv = [*command, *cell.argv(folder), "--teacher_eval_cache", os.path.join(output_dir, "teacher_eval"),
                *(["--overwrite_output_dir", "true"] if retry else [])]
        write_json(os.path.join(folder, CELL_FILE), {**record, "argv": argv, "status": "running"})
        log(f"[{i}/{len(cells)}] {cell.name}: running {' '.join(argv[1:])}")
        start = time.perf_counter()
        try:
            with open(os.path.join(folder, "log.txt"), "w", encoding="utf-8") as out:
                returncode = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        finally:
            release_cell(folder)
        wall = round(time.perf_counter() - start, 1)
        status = "done" if returncode == 0 and os.path.isfile(os.path.join(folder, EVAL_FILE)) else "failed"
        write_json(os.path.join(folder, CELL_FILE), {**record, "argv": argv, "status": status, "wall_s": wall,
                                                      "returncode": returncode})
        log(f"[{i}/{len(cells)}] {cell.name}: {status} in {wall:.0f} s"
            + ("" if status == "done" else f" (exit {returncode}; see {folder}/log.txt)"))
        records.append({**record, "status": status, "wall_s": wall})
    return records


def cell_metrics(eval_results: dict) -> dict[str, float]:
    """Flat metrics of one distill.py ``eval_results.json``: ``t2i_R@1_<lang>``, ``i2t_R@1_<lang>``,
    ``t2i_MRR@10_<lang>`` (``<lang>`` also ``mean``), ``purity_<lang>`` (also ``mean``, ``mixed``),
    ``vqa_<lang>`` (also ``mean``), ``consistency_<lang>`` (top-1 agreement with English) and
    ``consistency_cosine_<lang>``; the teacher's numbers with a ``teacher_`` prefix; ``collapsed_languages``:
    how many of a model's languages are collapsed (``results["collapsed"]``, :mod:`mvld_hf.evaluation.collapse`:
    its purity and consistency there reward the collapse; the study's tables do not mark them yet)."""
    out: dict[str, float] = {}
    for model, prefix in (("student", ""), ("teacher", "teacher_")):
        results = eval_results.get(model) or {}
        if "collapsed" in results:
            out[f"{prefix}collapsed_languages"] = len(results["collapsed"] or [])
        for lang, values in (results.get("retrieval") or {}).items():
            if lang == "all":
                continue
            for metric in ("t2i_R@1", "i2t_R@1", "t2i_MRR@10", "i2t_MRR@10", "t2i_R@10"):
                if metric in values:
                    out[f"{prefix}{metric}_{lang}"] = values[metric]
        for lang, value in (results.get("purity") or {}).items():
            out[f"{prefix}purity_{lang}"] = value
        for lang, values in (results.get("vqa") or {}).items():
            if lang != "all":
                out[f"{prefix}vqa_{lang}"] = values["accuracy"]
        for lang, values in (results.get("consistency") or {}).items():
            out[f"{prefix}consistency_{lang}"] = values["top1_agreement"]
            out[f"{prefix}consistency_cosine_{lang}"] = values["cosine"]
    return {k: float(v) for k, v in out.items() if v is not None and not math.isnan(float(v))}


def collect(records: list[dict]) -> list[dict]:
    """``records`` with ``metrics`` read from each finished cell's ``eval_results.json``."""
    out = []
    for record in records:
        metrics = {}
        path = os.path.join(record["folder"], EVAL_FILE)
        if record["status"] in ("done", "skipped") and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                metrics = cell_metrics(json.load(f))
        out.append({**record, "method": record["settings"].get("method", SETTING_DEFAULTS["method"]),
                    "metrics": metrics})
    return out


def run_study(spec_or_path, output_dir: str | None = None, command: Sequence[str] | None = None,
              validate: Callable[[list[str]], object] | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Expand the grid, run the unfinished cells (``command`` + each cell's flags; default:
    :data:`DISTILL_COMMAND`, the installed package's ``mvld-distill`` in this Python), then write the results and
    report into ``output_dir`` (default: the spec's ``output_dir``, else ``outputs/study/<name>``).
    ``validate(argv)`` checks each cell's flags before anything runs (e.g. distill.py's argument parser). Returns
    the ``study_results.json`` dict; raises ``RuntimeError`` after writing the report if a cell failed."""
    spec = load_spec(spec_or_path)
    output_dir = output_dir or spec.get("output_dir") or os.path.join("outputs", "study", spec["name"])
    env = None
    if spec["plugins"]:  # the methods they register: known here (the validation) and in every cell
        load_method_modules(spec["plugins"])
        env = {**os.environ, METHODS_ENV: ",".join(filter(None, [os.environ.get(METHODS_ENV), *spec["plugins"]]))}
    cells = expand_grid(spec)
    if validate is not None:
        for cell in cells:
            try:
                validate(cell.argv(os.path.join(output_dir, "cells", cell.name)))
            except (SystemExit, Exception) as err:  # argparse exits; HfArgumentParser and CliError raise
                raise ValueError(f"cell {cell.settings}: distill.py rejects its settings ({err})") from None
    if command is None:
        command = DISTILL_COMMAND
        env = {**(env or os.environ), "MVLD_HF_DEFER_IMPORTS": "1"}  # its command line is checked before torch
    os.makedirs(output_dir, exist_ok=True)
    log(f"study {spec['name']}: {len(cells)} cells in {output_dir}")
    start = time.perf_counter()
    records = collect(run_cells(cells, output_dir, list(command), log=log, env=env))
    findings = compute_findings(records)
    results = write_report(spec, records, findings, output_dir, wall_s=round(time.perf_counter() - start, 1))
    log(f"wrote {output_dir}/study_results.json, study.md and plots")
    for finding in findings:
        log(f"  {finding['verdict']:>14}: {finding['claim']}")
    failed = [r["name"] for r in records if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"{len(failed)} cell(s) failed: {failed}; see their log.txt; rerun to retry them")
    elsewhere = [r["name"] for r in records if r["status"] == "running elsewhere"]
    if elsewhere:
        raise RuntimeError(f"{len(elsewhere)} cell(s) still running in another runner: {elsewhere}; rerun the "
                           "study when it is done to report every cell")
    return results
