"""``mvld-study``: run a study (a grid of ``mvld-distill`` runs), then its tables and the paper's findings.

    mvld-study configs/study/offline-smoke.yaml              # two methods, one seed, minutes
    mvld-study configs/study/offline.yaml --output_dir outputs/study/offline

Each cell of the grid is one ``mvld-distill`` run (``python -m mvld_hf.cli.distill`` of the installed package, a
subprocess) in ``<output_dir>/cells/<method>-<hash>``; rerunning skips finished cells, a changed setting reruns
only the cells it changes. Writes ``study_results.json``, ``study.md`` and plots into ``--output_dir`` (default:
the spec's ``output_dir``). See :mod:`mvld_hf.study` for the spec format and the findings.
"""

from __future__ import annotations

import argparse
import sys


def distill_parser():
    """The main job's argument parsing (:mod:`mvld_hf.cli.distill`), to check each cell's flags before anything
    runs."""
    from mvld_hf.cli.distill import parse_args

    return parse_args


def main(argv=None, command=None) -> dict:
    """Parse ``argv`` and run the study; ``command`` overrides how a cell runs (default: the installed
    ``mvld-distill``, :data:`mvld_hf.study.DISTILL_COMMAND`)."""
    parser = argparse.ArgumentParser(prog="mvld-study", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="study spec (YAML), e.g. configs/study/offline-smoke.yaml")
    parser.add_argument("--output_dir", default=None, help="where cells and reports go (default: the spec's)")
    parser.add_argument("--no_validate", action="store_true", help="skip checking the cells' flags up front")
    args = parser.parse_args(argv)
    from mvld_hf.study import run_study

    return run_study(args.config, output_dir=args.output_dir, command=command,
                     validate=None if args.no_validate else distill_parser())


def console_main() -> int:
    """The ``mvld-study`` console script; a failed cell or a rejected spec ends in one line (exit status 1)."""
    try:
        main()
    except (RuntimeError, ValueError) as err:
        sys.exit(f"study: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(console_main())
