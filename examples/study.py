#!/usr/bin/env python
"""Run a study: a grid of distillation runs, comparison tables and the paper's findings checked.

    python examples/study.py configs/study/offline-smoke.yaml              # two methods, one seed, minutes
    python examples/study.py configs/study/offline.yaml --output_dir outputs/study/offline

Each cell of the grid is one ``examples/distill.py`` run (a subprocess) in ``<output_dir>/cells/<method>-<hash>``;
rerunning skips finished cells, a changed setting reruns only the cells it changes. Writes
``study_results.json``, ``study.md`` and plots into ``--output_dir`` (default: the spec's ``output_dir``).
See :mod:`mvld_hf.study` for the spec format and the findings.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def distill_parser():
    """The main job's argument parsing (mvld_hf.cli.distill, which examples/distill.py runs), to check each
    cell's flags before anything runs."""
    from mvld_hf.cli.distill import parse_args

    return parse_args


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="study spec (YAML), e.g. configs/study/offline-smoke.yaml")
    parser.add_argument("--output_dir", default=None, help="where cells and reports go (default: the spec's)")
    parser.add_argument("--no_validate", action="store_true", help="skip checking the cells' flags up front")
    args = parser.parse_args(argv)
    from mvld_hf.study import run_study

    command = [sys.executable, os.path.join(HERE, "distill.py")]
    return run_study(args.config, output_dir=args.output_dir, command=command,
                     validate=None if args.no_validate else distill_parser())


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, ValueError) as err:
        sys.exit(f"study: {err}")
