"""``mvld-upload``: the ``hub_upload.py`` command (export a student as one Sentence Transformers model, write its
model card, optionally upload). The logic lives in :func:`mvld_hf.hub.main`."""

from __future__ import annotations

import sys

from ..hub import main


def console_main() -> int:
    return main(prog="mvld-upload")


if __name__ == "__main__":
    sys.exit(console_main())
