"""The paper's study as one command (``mvld-study SPEC``): a grid of distillation runs, comparison tables and the
paper's findings.

A study spec (YAML) names the settings of every run (cell) as ``mvld-distill`` flags::

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

Each cell is one ``mvld-distill`` run (``python -m mvld_hf.cli.distill`` of the installed package, a subprocess;
the same code path as a single run) in
``<output_dir>/cells/<method>-<fingerprint>``, where the fingerprint hashes the cell's settings: a rerun skips
cells whose folder holds a finished ``cell.json`` with the same fingerprint, and a changed setting only changes
(and reruns) the cells it touches. :func:`run_study` then reads every cell's ``eval_results.json`` and writes
``study_results.json`` (``cells``: settings and flat ``metrics``; ``findings``), ``study.md`` (tables: mean +-
std over seeds) and plots. The findings (:func:`compute_findings`) are pure functions of the cells, each with
its measured numbers and a verdict: ``holds``, ``does not hold``, ``within noise`` (the difference is not larger
than the seed spread, the larger of the two sides' standard deviations over seeds) or ``not measured`` (the
grid has no cells for it).

The parts: :mod:`.spec` (the spec and its cells), :mod:`.runner` (the cells run, locked and collected; the
``mvld-study`` command), :mod:`.analysis` (comparisons and findings) and :mod:`.report` (tables, plots, files).
"""

from .analysis import (
    SINGLE_METHODS,
    UNIFIED_METRICS,
    against_best_single,
    compare,
    compute_findings,
    metric_stats,
    setting,
    verdict,
)
from .report import (
    PER_LANGUAGE,
    SUMMARY_COLUMNS,
    format_against_best_single,
    format_findings,
    format_tables,
    group_variants,
    plot_study,
    variant_label,
    write_report,
)
from .runner import (
    DISTILL_COMMAND,
    LOCK_FILE,
    cell_done,
    cell_metrics,
    claim_cell,
    collect,
    release_cell,
    run_cells,
    run_study,
)
from .spec import (
    CELL_FILE,
    EVAL_FILE,
    EVALUATION_SETTINGS,
    FAILS,
    HOLDS,
    NOISE,
    NOT_MEASURED,
    RESERVED_SETTINGS,
    SETTING_DEFAULTS,
    SPEC_KEYS,
    STUDENT_RECIPE,
    Cell,
    expand_grid,
    fingerprint,
    load_spec,
)

__all__ = ["CELL_FILE", "DISTILL_COMMAND", "EVALUATION_SETTINGS", "EVAL_FILE", "FAILS", "HOLDS", "LOCK_FILE", "NOISE",
           "NOT_MEASURED", "PER_LANGUAGE", "RESERVED_SETTINGS", "SETTING_DEFAULTS", "SINGLE_METHODS", "SPEC_KEYS",
           "STUDENT_RECIPE", "SUMMARY_COLUMNS", "UNIFIED_METRICS", "Cell", "against_best_single", "cell_done",
           "cell_metrics", "claim_cell", "collect", "compare", "compute_findings", "expand_grid", "fingerprint",
           "format_against_best_single", "format_findings", "format_tables", "group_variants", "load_spec",
           "metric_stats", "plot_study", "release_cell", "run_cells", "run_study", "setting", "variant_label",
           "verdict", "write_report"]
