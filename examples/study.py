#!/usr/bin/env python
"""Run a study: a grid of distillation runs, comparison tables and the paper's findings checked.

    python examples/study.py configs/study/offline-smoke.yaml              # two methods, one seed, minutes
    python examples/study.py configs/study/offline.yaml --output_dir outputs/study/offline

The logic lives in :mod:`mvld_hf.cli.study` (also installed as the ``mvld-study`` command); each cell is one
``mvld-distill`` run. See :mod:`mvld_hf.study` for the spec format and the findings.
"""

from __future__ import annotations

import sys

from mvld_hf.cli.study import distill_parser, main  # noqa: F401  (distill_parser: importable from here as before)

if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, ValueError) as err:
        sys.exit(f"study: {err}")
