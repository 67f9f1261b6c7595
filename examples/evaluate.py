#!/usr/bin/env python
"""Evaluate a distilled student beside its teacher: per-language retrieval, clustering purity and VQA.

    python examples/evaluate.py --model outputs/distill-offline

The logic lives in :mod:`mvld_hf.cli.evaluate` (also installed as the ``mvld-evaluate`` command); every flag
is listed by ``python examples/evaluate.py --help``.
"""

import sys

from mvld_hf.cli.evaluate import console_main

if __name__ == "__main__":
    sys.exit(console_main())
