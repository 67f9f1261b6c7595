"""A study's spec: the YAML grid (:func:`load_spec`), its cells (:class:`Cell`, :func:`expand_grid`: one
``mvld-distill`` run each, named by a fingerprint of its settings) and the constants the other parts share."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass

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


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


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
