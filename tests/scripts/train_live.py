"""A run that another process evaluates while it trains; run by ``tests/test_nothing_lost.py``.

    python tests/scripts/train_live.py WORKDIR OUTPUT_DIR GATE_DIR

Trains ``train_and_kill.py``'s set-up for 3 steps, saving every step with ``save_total_limit=1``. After saving
checkpoint-1 it writes ``GATE_DIR/saved-1`` and waits for ``GATE_DIR/go`` (the evaluation has read the
checkpoint); then it trains on, so rotation deletes checkpoint-1 while the evaluation runs. At the end of training
(the run lock still held) it writes ``GATE_DIR/trained`` and waits for ``GATE_DIR/done``.
"""

from __future__ import annotations

import os
import sys
import time

import torch
from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.scripts.train_and_kill import build_trainer  # noqa: E402


def wait_for(path: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit(f"gave up waiting for {path}")
        time.sleep(0.1)


class Gates(TrainerCallback):
    def __init__(self, gate_dir: str):
        self.gate_dir = gate_dir

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 1:
            open(os.path.join(self.gate_dir, "saved-1"), "w").close()
            wait_for(os.path.join(self.gate_dir, "go"))

    def on_train_end(self, args, state, control, **kwargs):
        open(os.path.join(self.gate_dir, "trained"), "w").close()
        wait_for(os.path.join(self.gate_dir, "done"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    workdir, output_dir, gate_dir = sys.argv[1:4]
    build_trainer(workdir, output_dir, [Gates(gate_dir)], max_steps=3, save_steps=1, save_total_limit=1).train()
