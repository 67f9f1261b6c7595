#!/usr/bin/env python
"""Distil a multilingual text student into a frozen English vision-language teacher.

    accelerate launch examples/distill.py                       # offline world: no Hub needed
    accelerate launch examples/distill.py configs/clip-l14_xlmr-base_dr.yaml   # a paper setup (needs the Hub)

The logic lives in :mod:`mvld_hf.cli.distill` (also installed as the ``mvld-distill`` command); every flag is
listed by ``python examples/distill.py --help``.
"""

import os
import sys

if "mvld_hf" not in sys.modules:  # check the command line before torch/transformers load (mvld_hf reads it once)
    os.environ["MVLD_HF_DEFER_IMPORTS"] = "1"

from mvld_hf.cli.distill import main  # noqa: E402

if __name__ == "__main__":
    main()
