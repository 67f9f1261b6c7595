"""One run per output_dir: a second real process into a held folder is refused naming the holder; a lock left
by a killed process is taken over; the trainer and the command line check it before any work."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

import mvld_hf.run_lock as run_lock
from mvld_hf.run_lock import LOCK_FILE, RunLock, RunLockError, live_holder

# the child imports only the lock module (by path: no torch, transformers or mvld_hf/__init__), so it starts fast
CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("run_lock", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
lock = module.RunLock(sys.argv[2]).acquire()
print("locked", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""


@pytest.fixture
def holder(tmp_path):
    """A second python process holding the lock on tmp_path/out until its stdin gets a line."""
    out = str(tmp_path / "out")
    child = subprocess.Popen([sys.executable, "-c", CHILD, run_lock.__file__, out, "--output_dir", out],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    yield out, child
    if child.poll() is None:
        child.kill()
        child.wait()


def test_a_second_process_into_a_held_folder_is_refused_naming_the_holder(holder):
    out, child = holder
    with pytest.raises(RunLockError) as err:
        RunLock(out).acquire()
    message = str(err.value)
    assert "\n" not in message and f"pid {child.pid} on host {socket.gethostname()}" in message
    assert "--output_dir" in message and LOCK_FILE in message
    assert live_holder(out)["pid"] == child.pid
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "released" and child.wait(10) == 0
    assert not os.path.exists(os.path.join(out, LOCK_FILE)) and live_holder(out) is None
    with RunLock(out):  # free again
        assert json.load(open(os.path.join(out, LOCK_FILE)))["pid"] == os.getpid()
    assert not os.path.exists(os.path.join(out, LOCK_FILE))


def test_the_lock_of_a_killed_process_is_taken_over(holder, caplog):
    out, child = holder
    child.send_signal(signal.SIGKILL)  # no cleanup: the lock file stays
    child.wait(10)
    assert os.path.exists(os.path.join(out, LOCK_FILE)) and live_holder(out) is None
    lock = RunLock(out).acquire()
    assert lock.owned and json.load(open(os.path.join(out, LOCK_FILE)))["pid"] == os.getpid()
    assert f"pid {child.pid}" in caplog.text and "gone" in caplog.text
    lock.release()
    assert os.listdir(out) == []  # no temporary or moved-aside files left


def test_a_reused_pid_or_another_host_is_judged_right(tmp_path):
    out = str(tmp_path)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": "1", "time": 0, "command": "x"}
    with open(os.path.join(out, LOCK_FILE), "w") as handle:  # this pid, but a process started at another time
        json.dump(record, handle)
    assert live_holder(out) is None and run_lock.holder_is_gone(record)
    with open(os.path.join(out, LOCK_FILE), "w") as handle:  # a host whose pids cannot be checked from here
        json.dump({**record, "host": "elsewhere", "pid": 1}, handle)
    with pytest.raises(RunLockError, match="pid 1 on host elsewhere"):
        RunLock(out).acquire()


def test_the_same_process_may_take_it_again_and_only_the_creator_releases(tmp_path):
    outer = RunLock(str(tmp_path)).acquire()
    inner = RunLock(str(tmp_path)).acquire()  # e.g. the trainer inside the command line
    assert outer.owned and not inner.owned
    inner.release()
    assert os.path.exists(tmp_path / LOCK_FILE)
    outer.release()
    assert not os.path.exists(tmp_path / LOCK_FILE)


def test_the_trainer_refuses_a_held_folder_before_any_work(holder, tokenizer, toy_dataset, teacher):
    from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
    from mvld_hf.testing import tiny_student
    from tests.helpers import training_args

    out, child = holder
    data = precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher)
    args = training_args(pathlib.Path(out).parent, method="mcl")
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), args=args, train_dataset=data,
                                  processing_class=tokenizer)
    with pytest.raises(RunLockError, match=f"pid {child.pid}"):
        trainer.train()
    assert trainer.state.global_step == 0 and sorted(os.listdir(out)) == [LOCK_FILE]


def test_the_command_line_refuses_a_held_folder_before_any_work(holder):
    from mvld_hf.cli.arguments import CliError, parse_args, validate_cli

    out, child = holder
    with pytest.raises(CliError, match=f"in use by another run \\(pid {child.pid}"):
        validate_cli(*parse_args(["--output_dir", out, "--max_steps", "2"]))


def test_the_lock_is_released_when_training_ends_by_ctrl_c(tmp_path, tokenizer, toy_dataset, teacher):
    from transformers import TrainerCallback

    from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
    from mvld_hf.testing import tiny_student
    from tests.helpers import training_args

    class CtrlC(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            assert live_holder(args.output_dir) is None and os.path.exists(os.path.join(args.output_dir, LOCK_FILE))
            raise KeyboardInterrupt

    data = precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), args=training_args(tmp_path, method="mcl"),
                                  train_dataset=data, processing_class=tokenizer, callbacks=[CtrlC()])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.state.global_step == 1 and not os.path.exists(tmp_path / "out" / LOCK_FILE)


RANK = """
import importlib.util, sys
import torch.distributed as dist
spec = importlib.util.spec_from_file_location("run_lock", sys.argv[4])  # without mvld_hf/__init__'s imports
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
RunLockError, lock_output_dir = module.RunLockError, module.lock_output_dir
rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
try:
    lock_output_dir(out, saves=rank == 0)
    print("acquired")
except RunLockError as err:
    print("refused:", err)
dist.destroy_process_group()
"""


def test_every_rank_learns_the_main_process_refusal_without_a_deadlock(tmp_path):
    """Two gloo ranks into a folder this process holds: rank 0 is refused, rank 1 (which takes no lock) learns it
    through the all-reduce and stops too, instead of waiting for rank 0 in the next collective."""
    out = str(tmp_path / "out")
    with RunLock(out):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        command = [sys.executable, "-c", RANK, "RANK", str(tmp_path / "store"), out, run_lock.__file__]
        ranks = [subprocess.Popen([str(rank) if a == "RANK" else a for a in command], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for rank in (0, 1)]
        outputs = [rank.communicate(timeout=120) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], [err[-2000:] for _, err in outputs]
    assert outputs[0][0].startswith(f"refused: output_dir {out} is in use by another run (pid {os.getpid()}")
    assert outputs[1][0].startswith(f"refused: output_dir {out} is in use by another run (the main process")


def test_a_file_system_without_hard_links_still_gets_an_exclusive_lock(tmp_path, monkeypatch):
    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(run_lock.os, "link", no_links)
    lock = RunLock(str(tmp_path)).acquire()
    assert lock.owned and json.load(open(tmp_path / LOCK_FILE))["pid"] == os.getpid()
    with open(tmp_path / LOCK_FILE, "w") as handle:  # now held by a live process of another host
        json.dump({"pid": 1, "host": "elsewhere"}, handle)
    with pytest.raises(RunLockError, match="pid 1 on host elsewhere"):
        RunLock(str(tmp_path)).acquire()
