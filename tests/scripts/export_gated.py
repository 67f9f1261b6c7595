"""``hub_upload.py`` (``mvld_hf.hub.main``) whose export pauses once its checks have passed; run by
``tests/test_nothing_lost.py`` to hold two exports into one folder at the same moment.

    python tests/scripts/export_gated.py GATE_DIR NAME HUB_UPLOAD_ARGS...

Before writing the export (``mvld_hf.export._export_into``) it creates ``GATE_DIR/NAME-exporting`` and waits for
``GATE_DIR/go``.
"""

from __future__ import annotations

import os
import sys
import time

import mvld_hf.export as export
from mvld_hf.hub import main


def gated(gate_dir: str, name: str):
    original = export._export_into

    def export_into(*args, **kwargs):
        open(os.path.join(gate_dir, f"{name}-exporting"), "w").close()
        deadline = time.time() + 300
        while not os.path.exists(os.path.join(gate_dir, "go")) and time.time() < deadline:
            time.sleep(0.1)
        return original(*args, **kwargs)

    return export_into


if __name__ == "__main__":
    export._export_into = gated(sys.argv[1], sys.argv[2])
    sys.exit(main(sys.argv[3:]))
