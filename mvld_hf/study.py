"""The paper's study as one command: a grid of distillation runs, comparison tables and the paper's findings.

A study spec (YAML) names the settings of every run (cell) as ``examples/distill.py`` flags::

    name: offline-smoke
    base: {world_train_scenes: 600, max_steps: 300}     # shared by every cell
    grid:                                               # a list of sub-grids: each is a cartesian product
      - {method: [dr, ed], seed: [0]}
      - {method: [dr], anchor: [image]}                 # lists are values to try; a list-valued flag
                                                        # takes a list of lists (world_language_share)
    plugins: [my_methods.py]                            # optional: modules registering methods of one's own

``plugins`` (module names, or ``.py`` files relative to the spec) are imported here and named in every cell's
``$MVLD_HF_METHODS`` (:func:`mvld_hf.losses.registry.load_method_modules`), so a method registered by them
(:func:`mvld_hf.losses.register_method`) can be a grid value of ``method``.

Each cell is one ``examples/distill.py`` run (a subprocess; the same code path as a single run) in
``<output_dir>/cells/<method>-<fingerprint>``, where the fingerprint hashes the cell's settings: a rerun skips
cells whose folder holds a finished ``cell.json`` with the same fingerprint, and a changed setting only changes
(and reruns) the cells it touches. :func:`run_study` then reads every cell's ``eval_results.json`` and writes
``study_results.json`` (``cells``: settings and flat ``metrics``; ``findings``), ``study.md`` (tables: mean +-
std over seeds) and plots. The findings (:func:`compute_findings`) are pure functions of the cells, each with
its measured numbers and a verdict: ``holds``, ``does not hold``, ``within noise`` (the difference is not larger
than the seed spread, the larger of the two sides' standard deviations over seeds) or ``not measured`` (the
grid has no cells for it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .losses.registry import METHODS_ENV, PAPER_METHODS, load_method_modules

__all__ = ["Cell", "against_best_single", "compute_findings", "expand_grid", "load_spec", "run_study",
           "cell_metrics", "verdict", "write_report", "SETTING_DEFAULTS"]

logger = logging.getLogger(__name__)

#: values a setting has when a cell does not name it (what examples/distill.py does by default)
SETTING_DEFAULTS = {"method": "dr", "anchor": "text", "anchor_language": "en", "student": "offline",
                    "teacher": "offline", "world_language_share": None}
#: study-level keys of a spec
SPEC_KEYS = {"name", "description", "output_dir", "base", "grid", "notes", "estimate", "plugins"}
#: set by the runner, never by a spec
RESERVED_SETTINGS = {"output_dir"}
#: settings that form a student's training recipe: ignored when comparing students
STUDENT_RECIPE = {"learning_rate", "pooling", "per_device_train_batch_size", "max_steps", "warmup_steps",
                  "weight_decay", "max_length", "offline_hidden_size", "offline_layers", "offline_heads",
                  "offline_vocab_size", "offline_max_token_length", "queue_size", "projection_init"}
#: settings that change what is evaluated or logged, not what is trained: ignored when comparing cells and in
#: variant names (e.g. VQA skipped in the cells whose findings don't read it)
EVALUATION_SETTINGS = {"eval_vqa", "logging_steps", "disable_tqdm", "save_strategy", "save_steps",
                       "save_total_limit", "report_to", "per_device_eval_batch_size"}
HOLDS, FAILS, NOISE, NOT_MEASURED = "holds", "does not hold", "within noise", "not measured"
CELL_FILE = "cell.json"
EVAL_FILE = "eval_results.json"


# ---------------------------------------------------------------------------------------------------- spec
def load_spec(path_or_dict) -> dict:
    """Read and check a study spec (a YAML path or a dict). Returns a dict with ``name``, ``base``, ``grid``
    (a list of sub-grids) and the other keys as given."""
    if isinstance(path_or_dict, dict):
        spec, where = dict(path_or_dict), "the study spec"
    else:
        import yaml

        with open(path_or_dict, encoding="utf-8") as f:
            spec, where = yaml.safe_load(f) or {}, str(path_or_dict)
        spec.setdefault("name", os.path.splitext(os.path.basename(path_or_dict))[0])
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a mapping with keys {sorted(SPEC_KEYS)}")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; a spec has {sorted(SPEC_KEYS)} (run settings go "
                         "under 'base' or 'grid')")
    base = spec.get("base") or {}
    if not isinstance(base, dict):
        raise ValueError(f"{where}: 'base' must map setting names to values")
    grid = spec.get("grid")
    if grid is None:
        raise ValueError(f"{where}: 'grid' is missing (e.g. grid: [{{method: [dr, ed], seed: [0, 1, 2]}}])")
    grid = [grid] if isinstance(grid, dict) else grid
    if not isinstance(grid, list) or not grid or not all(isinstance(g, dict) for g in grid):
        raise ValueError(f"{where}: 'grid' must be a mapping or a non-empty list of mappings setting -> values")
    for settings in [base, *grid]:
        bad = sorted(RESERVED_SETTINGS & set(settings))
        if bad:
            raise ValueError(f"{where}: {bad} is set by the study runner (one folder per cell); remove it")
    spec["base"], spec["grid"] = base, grid
    spec.setdefault("name", "study")
    plugins = spec.get("plugins") or []
    plugins = [plugins] if isinstance(plugins, str) else plugins
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p.strip() for p in plugins):
        raise ValueError(f"{where}: 'plugins' must list modules or .py files that register methods")
    folder = os.path.dirname(os.path.abspath(path_or_dict)) if not isinstance(path_or_dict, dict) else os.getcwd()
    spec["plugins"] = [os.path.join(folder, p) if p.endswith(".py") else p for p in plugins]
    return spec


def _expand_value(key: str, value):
    if isinstance(value, str):
        expanded = os.path.expandvars(value)
        if "$" in expanded:
            var = re.search(r"\$\{?(\w+)", expanded).group(1)
            raise ValueError(f"setting {key}={value!r} uses the environment variable {var}, which is not set; "
                             f"export {var}=... (see the spec's notes)")
        return expanded
    if isinstance(value, list):
        return [_expand_value(key, v) for v in value]
    return value


def fingerprint(settings: dict) -> str:
    """A short stable hash of a cell's settings (key order does not matter)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class Cell:
    """One run of the grid: its settings (distill.py flags, ``method`` and ``seed`` among them)."""

    settings: dict

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.settings)

    @property
    def name(self) -> str:
        method = re.sub(r"[^A-Za-z0-9+]+", "_", str(self.settings.get("method", SETTING_DEFAULTS["method"])))
        return f"{method}-{self.fingerprint}"

    def argv(self, output_dir: str) -> list[str]:
        """distill.py command-line flags of this cell, writing into ``output_dir``."""
        out = ["--output_dir", str(output_dir)]
        for key in sorted(self.settings):
            value = self.settings[key]
            if value is None:
                continue
            if isinstance(value, bool):
                out += [f"--{key}", "true" if value else "false"]
            elif isinstance(value, dict):  # e.g. method_kwargs: {drg: {geometry_weight: 0.5}}
                out += [f"--{key}", json.dumps(value, sort_keys=True)]
            elif isinstance(value, (list, tuple)):
                if value:
                    out += [f"--{key}", *map(str, value)]
            else:
                out += [f"--{key}", str(value)]
        return out


def expand_grid(spec: dict) -> list[Cell]:
    """Every cell of the spec: ``base`` updated by each combination of each sub-grid, duplicates (same settings
    from two sub-grids) once, seed by seed: every sub-grid's cells of the first seed, then of the next, so a
    study stopped part-way holds every comparison at fewer seeds. Environment variables in string values are
    expanded."""
    spec = load_spec(spec)
    cells, seen = [], set()
    for sub in spec["grid"]:
        keys = list(sub)
        choices = [v if isinstance(v, list) else [v] for v in sub.values()]
        for combo in _product(choices):
            settings = {**spec["base"], **dict(zip(keys, combo))}
            settings = {k: _expand_value(k, v) for k, v in settings.items()}
            cell = Cell(settings)
            if cell.fingerprint not in seen:
                seen.add(cell.fingerprint)
                cells.append(cell)
    rank: dict[str, int] = {}  # seeds in the order they first appear
    for cell in cells:
        rank.setdefault(str(cell.settings.get("seed")), len(rank))
    return sorted(cells, key=lambda c: rank[str(c.settings.get("seed"))])


def _product(choices: list[list]):
    if not choices:
        yield ()
        return
    for first in choices[0]:
        for rest in _product(choices[1:]):
            yield (first, *rest)


# ---------------------------------------------------------------------------------------------------- run
def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def claim_cell(folder: str) -> bool:
    """Take ``folder``'s lock for this process; False when a live process of this machine holds it (another
    runner of the same study is running that cell). A lock left by a dead process is taken over."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path, encoding="utf-8") as f:
                    holder = int(f.read().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and _pid_alive(holder):
                return False
            try:
                os.remove(path)  # stale: its runner was killed
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
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
        _write_json(os.path.join(folder, CELL_FILE), {**record, "argv": argv, "status": "running"})
        log(f"[{i}/{len(cells)}] {cell.name}: running {' '.join(argv[1:])}")
        start = time.perf_counter()
        try:
            with open(os.path.join(folder, "log.txt"), "w", encoding="utf-8") as out:
                returncode = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        finally:
            release_cell(folder)
        wall = round(time.perf_counter() - start, 1)
        status = "done" if returncode == 0 and os.path.isfile(os.path.join(folder, EVAL_FILE)) else "failed"
        _write_json(os.path.join(folder, CELL_FILE), {**record, "argv": argv, "status": status, "wall_s": wall,
                                                      "returncode": returncode})
        log(f"[{i}/{len(cells)}] {cell.name}: {status} in {wall:.0f} s"
            + ("" if status == "done" else f" (exit {returncode}; see {folder}/log.txt)"))
        records.append({**record, "status": status, "wall_s": wall})
    return records


def cell_metrics(eval_results: dict) -> dict[str, float]:
    """Flat metrics of one distill.py ``eval_results.json``: ``t2i_R@1_<lang>``, ``i2t_R@1_<lang>``,
    ``t2i_MRR@10_<lang>`` (``<lang>`` also ``mean``), ``purity_<lang>`` (also ``mean``, ``mixed``),
    ``vqa_<lang>`` (also ``mean``), ``consistency_<lang>`` (top-1 agreement with English) and
    ``consistency_cosine_<lang>``; the teacher's numbers with a ``teacher_`` prefix."""
    out: dict[str, float] = {}
    for model, prefix in (("student", ""), ("teacher", "teacher_")):
        results = eval_results.get(model) or {}
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


# ------------------------------------------------------------------------------------------------ findings
def setting(cell: dict, key: str):
    value = cell["settings"].get(key, SETTING_DEFAULTS.get(key))
    return tuple(value) if isinstance(value, list) else value


def _context(cell: dict, exclude: set) -> tuple:
    """The cell's settings that must match for two cells to be compared (defaults dropped)."""
    skip = exclude | {"seed"} | EVALUATION_SETTINGS
    items = []
    for key in sorted(cell["settings"]):
        value = setting(cell, key)
        if key not in skip and value != SETTING_DEFAULTS.get(key, object()):
            items.append((key, json.dumps(value, default=str)))
    return tuple(items)


def _stats(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def verdict(difference: float, spread: float | None) -> str:
    """``holds`` when ``difference`` (oriented so that positive is what the claim says) is positive and larger
    than ``spread`` (seed standard deviation; ``None`` with one seed: no noise check), ``does not hold``
    when negative beyond it, ``within noise`` otherwise.

    >>> verdict(2.0, 0.5), verdict(-2.0, 0.5), verdict(0.3, 0.5), verdict(0.1, None)
    ('holds', 'does not hold', 'within noise', 'holds')
    """
    if (spread is not None and abs(difference) <= spread) or difference == 0:
        return NOISE
    return HOLDS if difference > 0 else FAILS


def compare(cells: list[dict], key: str, a, b, metric, *, where: Callable[[dict], bool] | None = None,
            ignore: set = frozenset()) -> dict | None:
    """Metric of cells with ``key == a`` minus cells with ``key == b``, matched on every other setting
    (seed and ``ignore`` excepted). Returns ``{"a", "b", "difference", "spread", "seeds", "groups"}``
    (``a``/``b`` mean over seeds and matched groups; ``spread`` the largest per-side seed std) or ``None``
    when no cells match. ``metric`` is a metric name or a function of a cell."""
    get = metric if callable(metric) else (lambda c: c["metrics"].get(metric))
    groups: dict[tuple, dict[str, list[float]]] = {}
    for cell in cells:
        if where is not None and not where(cell):
            continue
        side = "a" if setting(cell, key) == a else "b" if setting(cell, key) == b else None
        value = get(cell) if side else None
        if value is None:
            continue
        groups.setdefault(_context(cell, {key} | set(ignore)), {"a": [], "b": []})[side].append(float(value))
    matched = [g for g in groups.values() if g["a"] and g["b"]]
    if not matched:
        return None
    means_a, means_b, spreads, seeds = [], [], [], []
    for g in matched:
        (ma, sa), (mb, sb) = _stats(g["a"]), _stats(g["b"])
        means_a.append(ma)
        means_b.append(mb)
        spreads += [s for s in (sa, sb) if s is not None]
        seeds.append(min(len(g["a"]), len(g["b"])))
    a_mean, b_mean = sum(means_a) / len(means_a), sum(means_b) / len(means_b)
    return {"a": a_mean, "b": b_mean, "difference": a_mean - b_mean, "spread": max(spreads) if spreads else None,
            "seeds": min(seeds), "groups": len(matched)}


def _finding(claim: str, parts: dict[str, dict | None], paper: str, signs: dict[str, int] | None = None,
             metric: str = "") -> dict:
    """One finding from named comparisons; each part's difference is oriented by ``signs`` (default +1: the
    claim says a > b). The overall verdict: ``does not hold`` if any part does not, ``within noise`` if any
    part is, ``holds`` if all hold, ``not measured`` without data."""
    signs = signs or {}
    measured, verdicts = {}, []
    for name, result in parts.items():
        if result is None:
            continue
        v = verdict(signs.get(name, 1) * result["difference"], result["spread"])
        measured[name] = {**{k: (round(x, 4) if isinstance(x, float) else x) for k, x in result.items()},
                          "verdict": v}
        verdicts.append(v)
    overall = (NOT_MEASURED if not verdicts else FAILS if FAILS in verdicts else NOISE if NOISE in verdicts
               else HOLDS)
    return {"claim": claim, "metric": metric, "paper": paper, "measured": measured, "verdict": overall}


def _languages_metric(prefix: str, languages: Sequence[str]) -> Callable[[dict], float | None]:
    def get(cell):
        values = [cell["metrics"].get(f"{prefix}_{lang}") for lang in languages]
        return None if any(v is None for v in values) or not values else sum(values) / len(values)
    return get


def _shares(cell: dict) -> dict[str, float]:
    value = setting(cell, "world_language_share") or ()
    return {lang: float(share) for lang, _, share in (str(v).partition(":") for v in value)}


def compute_findings(cells: list[dict]) -> list[dict]:
    """The paper's findings measured on ``cells`` (dicts with ``settings`` and flat ``metrics``; see
    :func:`cell_metrics`). Metrics are fractions; ``difference`` is a minus b. Comparisons match cells on all
    other settings (seed excepted), so e.g. DR is compared with ED at the same anchor, student and data."""
    cells = [c for c in cells if c.get("metrics")]
    baseline = [c for c in cells if not _shares(c)]  # full training data
    methods = sorted({setting(c, "method") for c in baseline})
    findings = []

    singles = [m for m in PAPER_METHODS if m != "dr" and m in methods]
    findings.append(_finding(
        "DR gives the best retrieval (MRR@10) of the single methods",
        {f"dr - {m}": compare(baseline, "method", "dr", m, "t2i_MRR@10_mean") for m in singles},
        "DR-distilled models achieve higher MRR@k than the other methods", metric="t2i_MRR@10_mean"))
    findings.append(_finding(
        "ED answers VQA better than DR", {"ed - dr": compare(baseline, "method", "ed", "dr", "vqa_mean")},
        "ED 35.54 vs DR 32.57 VQA average (+2.97 points)", metric="vqa_mean"))
    findings.append(_finding(
        "text anchors retrieve better than image anchors",
        {"text - image": compare(baseline, "anchor", "text", "image", "t2i_R@1_mean")},
        "text 42.15 vs image 27.36 retrieval average (+14.79 points)", metric="t2i_R@1_mean"))
    findings.append(_finding(
        "DR+FD improves retrieval over DR but hurts VQA",
        {"retrieval: dr+fd - dr": compare(baseline, "method", "dr+fd", "dr", "t2i_R@1_mean"),
         "vqa: dr+fd - dr": compare(baseline, "method", "dr+fd", "dr", "vqa_mean")},
        "retrieval +0.13, VQA -3.46 points", signs={"vqa: dr+fd - dr": -1}, metric="t2i_R@1_mean, vqa_mean"))
    findings.append(_finding(
        "English anchors beat German and Chinese anchors",
        {f"en - {lang}": compare(baseline, "anchor_language", "en", lang, "t2i_R@1_mean")
         for lang in ("de", "zh")},
        "German or Chinese anchors degrade performance (section 5.3.1)", metric="t2i_R@1_mean"))

    # student vs teacher purity: same caption sets, same k (the evaluator clusters both on identical captions)
    purity = {}
    for method in methods:
        group = [c for c in baseline if setting(c, "method") == method
                 and all(setting(c, k) == SETTING_DEFAULTS[k] for k in ("anchor", "anchor_language", "student"))]
        for scope in ("en", "mixed"):
            pairs = [(c["metrics"].get(f"purity_{scope}"), c["metrics"].get(f"teacher_purity_{scope}"))
                     for c in group]
            pairs = [p for p in pairs if None not in p]
            if pairs:
                (ms, ss), (mt, st) = _stats([p[0] for p in pairs]), _stats([p[1] for p in pairs])
                spread = max([s for s in (ss, st) if s is not None], default=None)
                purity[f"{method}, {scope} captions: student - teacher"] = {
                    "a": ms, "b": mt, "difference": ms - mt, "spread": spread, "seeds": len(pairs), "groups": 1}
    findings.append(_finding(
        "the student clusters captions better than its teacher (purity, same captions and k)", purity,
        "students achieve better purity than the teacher (sections 6.2-6.3)", metric="purity"))

    # weak languages: a small share of training rows vs the full data, same languages, same other settings
    weak = {}
    for cell in cells:
        low = sorted(lang for lang, share in _shares(cell).items() if 0 < share < 1)
        if not low:
            continue
        label = "/".join(low)
        get = _languages_metric("t2i_R@1", low)
        key = f"full data - {label} at {min(_shares(cell)[x] for x in low):g} share"
        if key in weak:
            continue
        share_value = setting(cell, "world_language_share")
        weak[key] = compare(cells, "world_language_share", None, share_value, get)
    findings.append(_finding(
        "languages with little training data are weak (R@1 of those languages)", weak,
        "Bengali, Telugu, Swahili weak when training data lacks them", metric="t2i_R@1 of the reduced languages"))

    # zero-shot languages: a pretrained student vs the from-scratch one, languages absent from distillation
    zero = {}
    for cell in cells:
        unseen = sorted(lang for lang, share in _shares(cell).items() if share == 0)
        if not unseen or setting(cell, "student") == "offline":
            continue
        key = f"pretrained - from scratch, unseen {'/'.join(unseen)}"
        if key not in zero:
            share_value = setting(cell, "world_language_share")
            zero[key] = compare([c for c in cells if setting(c, "world_language_share") == share_value],
                                "student", setting(cell, "student"), "offline",
                                _languages_metric("t2i_R@1", unseen), ignore=STUDENT_RECIPE)
    findings.append(_finding(
        "a pretrained multilingual student retrieves in languages never seen in distillation", zero,
        "Mechanism 3: the student's pretraining carries cross-lingual similarity",
        metric="t2i_R@1 of the zero-shot languages"))
    return findings


# ------------------------------------------------------------------------------------------------- reports
def variant_label(settings: dict, varying: Sequence[str]) -> str:
    """A short name for a cell's settings without the seed: method, then the other varied settings (not the
    evaluation-only ones, nor the training recipe of a student other than the default one)."""
    parts = [str(settings.get("method", SETTING_DEFAULTS["method"]))]
    own_recipe = settings.get("student", SETTING_DEFAULTS["student"]) != SETTING_DEFAULTS["student"]
    for key in varying:
        if key in ("method", "seed") or key in EVALUATION_SETTINGS or (own_recipe and key in STUDENT_RECIPE):
            continue
        value = settings.get(key, SETTING_DEFAULTS.get(key))
        if value == SETTING_DEFAULTS.get(key, object()) or value is None:
            continue
        if key == "anchor":
            parts.append(f"{value} anchor")
        elif key == "anchor_language":
            parts.append(f"{value} anchor captions")
        elif key == "student":
            parts.append(f"student {os.path.basename(str(value).rstrip('/'))}")
        elif key == "world_language_share":
            parts.append("share " + " ".join(map(str, value)))
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def group_variants(cells: list[dict]) -> dict[str, list[dict]]:
    """Cells grouped by :func:`variant_label` (seeds together), in grid order."""
    default_student = [c for c in cells if c["settings"].get("student", SETTING_DEFAULTS["student"])
                       == SETTING_DEFAULTS["student"]]
    varying = []
    for cell in cells:
        for key in cell["settings"]:
            # a training-recipe setting names a variant only when it varies among the default student's cells
            pool = default_student if key in STUDENT_RECIPE else cells
            values = {json.dumps(c["settings"].get(key), default=str) for c in pool}
            if len(values) > 1 and key not in varying:
                varying.append(key)
    groups: dict[str, list[dict]] = {}
    for cell in cells:
        groups.setdefault(variant_label(cell["settings"], varying), []).append(cell)
    return groups


def _mean_std(cells: list[dict], key: str) -> tuple[float | None, float | None, list[float]]:
    values = [c["metrics"][key] for c in cells if key in c["metrics"]]
    if not values:
        return None, None, []
    mean, std = _stats(values)
    return mean, std, values


def _fmt(mean, std) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


SUMMARY_COLUMNS = [("T2I R@1", "t2i_R@1_mean"), ("I2T R@1", "i2t_R@1_mean"), ("MRR@10", "t2i_MRR@10_mean"),
                   ("VQA acc", "vqa_mean"), ("purity en", "purity_en"), ("purity mixed", "purity_mixed"),
                   ("consistency", "consistency_mean")]
PER_LANGUAGE = [("T2I R@1", "t2i_R@1"), ("I2T R@1", "i2t_R@1"), ("MRR@10", "t2i_MRR@10"), ("VQA accuracy", "vqa"),
                ("purity (each language clustered alone)", "purity"),
                ("cross-lingual consistency (top-1 agreement with English)", "consistency")]


def _languages(cells: list[dict], prefix: str) -> list[str]:
    langs = set()
    for cell in cells:
        for key in cell["metrics"]:
            if key.startswith(prefix + "_") and not key.startswith("teacher_"):
                lang = key[len(prefix) + 1:]
                if lang not in ("mean", "mixed") and "_" not in lang:
                    langs.add(lang)
    order = ["en", "de", "fr", "es", "sw", "ru", "zh", "ja", "th", "hi", "bn", "te", "ar"]
    return sorted(langs, key=lambda x: (order.index(x) if x in order else len(order), x))


def format_tables(cells: list[dict]) -> str:
    """Markdown: one summary table (per variant, mean ± std over seeds, in %) and one per-language table per
    metric; the teacher (English-only, the same in every cell of one world) as the last row."""
    groups = group_variants(cells)
    teacher = [c for c in cells if any(k.startswith("teacher_") for k in c["metrics"])]
    lines = ["| variant | seeds | " + " | ".join(name for name, _ in SUMMARY_COLUMNS) + " |",
             "|---|---|" + "---|" * len(SUMMARY_COLUMNS)]
    for label, group in groups.items():
        cols = [_fmt(*_mean_std(group, key)[:2]) for _, key in SUMMARY_COLUMNS]
        lines.append(f"| {label} | {len(group)} | " + " | ".join(cols) + " |")
    if teacher:
        cols = [_fmt(_mean_std(teacher, "teacher_" + key)[0], None) for _, key in SUMMARY_COLUMNS]
        lines.append("| *teacher (English only)* | – | " + " | ".join(cols) + " |")
    parts = ["### Per variant (mean over languages; mean ± std over seeds, %)\n", "\n".join(lines)]
    for title, prefix in PER_LANGUAGE:
        langs = _languages(cells, prefix)
        if not langs:
            continue
        rows = ["| variant | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
        for label, group in groups.items():
            rows.append(f"| {label} | " + " | ".join(_fmt(*_mean_std(group, f"{prefix}_{lang}")[:2])
                                                     for lang in langs) + " |")
        if teacher:
            rows.append("| *teacher* | " + " | ".join(_fmt(_mean_std(teacher, f"teacher_{prefix}_{lang}")[0], None)
                                                      for lang in langs) + " |")
        parts += [f"\n### {title} per language (%)\n", "\n".join(rows)]
    return "\n".join(parts) + "\n"


#: the paper's single methods, against which a combination or a candidate objective is read
SINGLE_METHODS = PAPER_METHODS
#: what "best at retrieval and VQA" reads: (label, metric key)
UNIFIED_METRICS = (("MRR@10", "t2i_MRR@10_mean"), ("T2I R@1", "t2i_R@1_mean"), ("VQA acc", "vqa_mean"))


def against_best_single(cells: list[dict], metrics: Sequence[tuple[str, str]] = UNIFIED_METRICS,
                        singles: Sequence[str] = SINGLE_METHODS) -> list[dict]:
    """Every non-single method of ``cells`` (combinations, candidate objectives) against the best single method
    of each metric (the highest mean over seeds). ``cells`` must differ only in method and seed (one study row).

    Returns one dict per (method, metric): ``method``, ``metric``, ``mean``/``std`` over its seeds, ``best``
    (the best single method's code) with ``best_mean``/``best_std``, ``difference`` (method - best) and
    ``verdict``: :func:`verdict` of the difference against the larger of the two seed spreads (``holds``:
    above the best single method beyond the spread)."""
    by_method: dict[str, list[dict]] = {}
    for cell in cells:
        if cell.get("metrics"):
            by_method.setdefault(setting(cell, "method"), []).append(cell)
    contexts = {_context(c, {"method"}) for group in by_method.values() for c in group}
    if len(contexts) > 1:
        raise ValueError(f"against_best_single compares cells that differ only in method and seed, got "
                         f"{len(contexts)} setting groups")
    rows = []
    for label, key in metrics:
        stats = {m: _mean_std(group, key) for m, group in by_method.items()}
        measured_singles = [m for m in singles if stats.get(m, (None,))[0] is not None]
        if not measured_singles:
            continue
        best = max(measured_singles, key=lambda m: stats[m][0])
        best_mean, best_std, _ = stats[best]
        for method, (mean, std, _) in stats.items():
            if method in singles or mean is None:
                continue
            spreads = [x for x in (std, best_std) if x is not None]
            difference = mean - best_mean
            rows.append({"method": method, "metric": label, "mean": mean, "std": std, "best": best,
                         "best_mean": best_mean, "best_std": best_std, "difference": difference,
                         "verdict": verdict(difference, max(spreads) if spreads else None)})
    return rows


def format_against_best_single(rows: list[dict]) -> str:
    """Markdown of :func:`against_best_single`: one row per method, one column per metric."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    table = {(r["method"], r["metric"]): r for r in rows}
    lines = ["| method | " + " | ".join(f"{m}: vs best single" for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    best = {r["metric"]: r for r in rows}
    lines.append("| *best single method* | " + " | ".join(
        f"{best[m]['best'].upper()} {_fmt(best[m]['best_mean'], best[m]['best_std'])}" for m in metrics) + " |")
    for method in methods:
        cells = []
        for m in metrics:
            r = table.get((method, m))
            cells.append("–" if r is None else
                         f"{_fmt(r['mean'], r['std'])} ({100 * r['difference']:+.1f}: {r['verdict']})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_findings(findings: list[dict]) -> str:
    rows = ["| claim | paper | measured (a - b, points; seed spread) | verdict |", "|---|---|---|---|"]
    for f in findings:
        measured = "; ".join(
            f"{name}: {100 * m['a']:.1f} vs {100 * m['b']:.1f} = {100 * m['difference']:+.1f}"
            + (f" (± {100 * m['spread']:.1f}, {m['seeds']} seeds)" if m["spread"] is not None
               else f" ({m['seeds']} seed)") for name, m in f["measured"].items()) or "no cells"
        rows.append(f"| {f['claim']} | {f['paper']} | {measured} | **{f['verdict']}** |")
    return "\n".join(rows) + "\n"


def _save_figure(fig, path: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_study(cells: list[dict], output_dir: str) -> list[str]:
    """Heatmap variant x language of T2I R@1, retrieval vs VQA per variant, bars per variant with the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_variants(cells)
    labels = list(groups)
    paths = []
    langs = _languages(cells, "t2i_R@1")
    if langs:
        grid = [[(_mean_std(groups[v], f"t2i_R@1_{lang}")[0] or float("nan")) * 100 for lang in langs]
                for v in labels]
        fig, ax = plt.subplots(figsize=(1 + 0.6 * len(langs), 1.2 + 0.45 * len(labels)))
        image = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0, vmax=100)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_yticks(range(len(labels)), labels)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if value < 60 else "black")
        fig.colorbar(image, ax=ax, label="T2I R@1 (%)")
        ax.set_title("Held-out text-to-image R@1 per language (mean over seeds)")
        paths.append(_save_figure(fig, os.path.join(output_dir, "heatmap_t2i_R@1.png")))
    fig, ax = plt.subplots(figsize=(7, 5))
    for label in labels:
        (rx, sx, _), (vy, sy, _) = _mean_std(groups[label], "t2i_R@1_mean"), _mean_std(groups[label], "vqa_mean")
        if rx is not None and vy is not None:
            ax.errorbar(100 * rx, 100 * vy, xerr=100 * (sx or 0), yerr=100 * (sy or 0), fmt="o", capsize=3)
            ax.annotate(label, (100 * rx, 100 * vy), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("retrieval: T2I R@1, mean over languages (%)")
    ax.set_ylabel("VQA accuracy, mean over languages (%)")
    ax.set_title("Retrieval vs VQA per variant (mean ± std over seeds)")
    paths.append(_save_figure(fig, os.path.join(output_dir, "retrieval_vs_vqa.png")))
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(labels), 4.5))
    for i, label in enumerate(labels):
        mean, std, values = _mean_std(groups[label], "t2i_MRR@10_mean")
        if mean is None:
            continue
        ax.bar(i, 100 * mean, yerr=100 * (std or 0), capsize=3, color="tab:blue", alpha=0.7)
        ax.scatter([i] * len(values), [100 * v for v in values], color="black", s=10, zorder=3)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("T2I MRR@10, mean over languages (%)")
    ax.set_title("Retrieval per variant (bars: mean ± std; dots: seeds)")
    paths.append(_save_figure(fig, os.path.join(output_dir, "bars_mrr.png")))
    return paths


def write_report(spec: dict, cells: list[dict], findings: list[dict], output_dir: str,
                 wall_s: float | None = None) -> dict:
    """Write ``study_results.json``, ``study.md`` and the plots into ``output_dir``; returns the results."""
    finished = [c for c in cells if c.get("metrics")]
    results = {"name": spec.get("name"), "description": spec.get("description"),
               "cells": [{k: c[k] for k in ("name", "fingerprint", "status", "wall_s", "method", "settings",
                                            "metrics") if k in c} for c in cells],
               "findings": findings, "wall_s": wall_s}
    _write_json(os.path.join(output_dir, "study_results.json"), results)
    plots = plot_study(finished, output_dir) if finished else []
    failed = [c["name"] for c in cells if c["status"] == "failed"]
    cell_time = sum(c.get("wall_s") or 0 for c in cells)
    md = [f"# Study: {spec.get('name')}\n", *([spec["description"].strip() + "\n"] if spec.get("description") else []),
          f"{len(finished)} of {len(cells)} cells finished" + (f"; failed: {failed}" if failed else "")
          + f"; cell wall time {cell_time / 60:.1f} min" + (f", this invocation {wall_s / 60:.1f} min" if wall_s
                                                           else "") + ".\n",
          "Purity: spherical k-means on the held-out captions with k = the number of distinct images among them, "
          "purity w.r.t. the image id; `purity en` clusters the English captions only, `purity mixed` all "
          "languages together; the teacher row clusters exactly the same caption sets with the same k.\n",
          "## Findings\n", format_findings(findings), "## Tables\n", format_tables(finished) if finished else "",
          "## Plots\n", *[f"![{os.path.basename(p)}]({os.path.basename(p)})\n" for p in plots]]
    with open(os.path.join(output_dir, "study.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    return results


def run_study(spec_or_path, output_dir: str | None = None, command: Sequence[str] | None = None,
              validate: Callable[[list[str]], object] | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Expand the grid, run the unfinished cells (``command`` + each cell's flags; default: this Python running
    ``examples/distill.py`` of the source tree), then write the results and report into ``output_dir``
    (default: the spec's ``output_dir``, else ``outputs/study/<name>``). ``validate(argv)`` checks each cell's
    flags before anything runs (e.g. distill.py's argument parser). Returns the ``study_results.json`` dict;
    raises ``RuntimeError`` after writing the report if a cell failed."""
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
        script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "distill.py")
        command = [sys.executable, script]
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
