"""Two CPU processes (gloo, launched by ``accelerate launch``) compute the same losses, gradients and DR queue as
one process on the doubled batch, for every method; and a short ``trainer.train()`` ends in the same weights.

One launch checks everything (see ``tests/scripts/distributed_check.py``); the 1-process reference runs here.
"""

import os
import socket
import subprocess
import sys

import pytest
import torch

from mvld_hf import MultilingualTextTower, MultilingualTextTowerConfig, precompute_teacher_embeddings
from mvld_hf.testing import tiny_backbone_config
from tests.scripts import distributed_check as check

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "distributed_check.py")
GLOBAL_BATCH, DIM = 8, 16


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(script: str, *script_args: str, timeout: int = 240,
                         env: dict | None = None) -> subprocess.CompletedProcess:
    """``accelerate launch`` two gloo ranks on this CPU machine (offline, one thread each, a free port)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **(env or {}))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), script, *script_args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tokenizer, teacher, toy_dataset):
    root = tmp_path_factory.mktemp("distributed")
    backbone = tiny_backbone_config(len(tokenizer))
    backbone.hidden_dropout_prob = backbone.attention_probs_dropout_prob = 0.0  # ranks draw different dropout
    torch.manual_seed(0)
    MultilingualTextTower(MultilingualTextTowerConfig(backbone_config=backbone.to_dict(), projection_dim=DIM)) \
        .save_pretrained(root / "student")
    generator = torch.Generator().manual_seed(0)

    def ids():
        lengths = torch.randint(3, 8, (GLOBAL_BATCH,), generator=generator)
        mask = (torch.arange(7) < lengths[:, None]).long()
        return torch.randint(5, len(tokenizer), (GLOBAL_BATCH, 7), generator=generator) * mask, mask

    batches = []
    for _ in range(3):
        (input_ids, mask), (en_ids, en_mask) = ids(), ids()
        batches.append({"input_ids": input_ids, "attention_mask": mask, "english_input_ids": en_ids,
                        "english_attention_mask": en_mask,
                        "teacher_text_embeds": torch.randn(GLOBAL_BATCH, DIM, generator=generator),
                        "teacher_image_embeds": torch.randn(GLOBAL_BATCH, DIM, generator=generator)})
    torch.save(batches, root / "batches.pt")
    tokenizer.save_pretrained(root / "tokenizer")
    precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher).save_to_disk(root / "dataset")
    toy_dataset.remove_columns("image").save_to_disk(root / "raw_dataset")
    return str(root)


@pytest.fixture(scope="module")
def two_process_results(workdir):
    result = launch_two_processes(SCRIPT, workdir)
    assert result.returncode == 0, f"2-process run failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return [torch.load(os.path.join(workdir, f"rank{r}.pt")) for r in (0, 1)]


@pytest.fixture(scope="module")
def one_process_results(workdir):
    shared = check.shared_precompute_run(workdir, share=False)
    return {"cases": check.run_cases(workdir), "train": check.train_run(workdir, check.TRAIN_GLOBAL_BATCH,
                                                                          check.TRAIN_GLOBAL_BATCH),
            "shared_train": check.train_run(workdir, check.TRAIN_GLOBAL_BATCH, check.TRAIN_GLOBAL_BATCH,
                                            dataset=shared.pop("dataset")),
            "shared_precompute": shared}


def test_two_gloo_ranks_under_ddp(two_process_results):
    for rank, result in enumerate(two_process_results):
        assert (result["rank"], result["world_size"], result["backend"]) == (rank, 2, "gloo")
        assert result["train"]["world_size"] == 2
        assert {r["wrapper"] for r in result["cases"].values()} == {"DistributedDataParallel"}


@pytest.mark.parametrize("case", [c[0] for c in check.CASES])
def test_losses_gradients_and_queue_equal_one_process(case, two_process_results, one_process_results):
    reference = one_process_results["cases"][case]["steps"]
    for result in two_process_results:
        steps = result["cases"][case]["steps"]
        assert len(steps) == len(reference)
        for i, (got, want) in enumerate(zip(steps, reference)):
            assert torch.allclose(got["loss"], want["loss"], atol=1e-5, rtol=0), (case, i, got["loss"], want["loss"])
            # float32 sums in a different order: equal to 1e-5 relative to the largest gradient entry (the
            # temperature 0.05 makes entries of order 10)
            scale = max(1.0, want["grads"].abs().max().item())
            diff = (got["grads"] - want["grads"]).abs().max().item()
            assert diff < 1e-5 * scale, f"{case} step {i}: gradients differ by {diff} (largest entry {scale})"
            if want["queue"] is not None:  # every rank enqueued the anchors of the whole global batch
                (keys, ptr), (ref_keys, ref_ptr) = got["queue"], want["queue"]
                assert ptr == ref_ptr and keys.shape == ref_keys.shape and torch.equal(keys, ref_keys)
    assert any(s["grads"].abs().max() > 0 for s in reference)  # (DR's first step, own anchor only, has none)
    if case.startswith("dr"):  # the checked steps include a non-empty and a wrapped-around queue
        sizes = [len(s["queue"][0]) for s in reference]
        assert sizes == [GLOBAL_BATCH, 2 * GLOBAL_BATCH, 2 * GLOBAL_BATCH]


def test_trainer_train_matches_one_process(two_process_results, one_process_results):
    reference = one_process_results["train"]
    assert reference["world_size"] == 1 and len(reference["logs"]) == check.TRAIN_STEPS
    for result in two_process_results:
        got = result["train"]
        assert len(got["logs"]) == len(reference["logs"])
        for entry, want in zip(got["logs"], reference["logs"]):
            assert entry.keys() == want.keys()
            for key in want:
                assert entry[key] == pytest.approx(want[key], abs=2e-4), key  # "loss" is logged to 4 digits
        assert (got["params"] - reference["params"]).abs().max() < 1e-5
        assert got["ptr"] == reference["ptr"] and torch.allclose(got["queue"], reference["queue"], atol=1e-6)


def test_precompute_shared_across_ranks(two_process_results, one_process_results):
    """Each rank embeds about half of the captions; both end with the one-process column (from the datasets
    cache for a dataset on disk, gathered for one in memory) and train to the one-process weights."""
    reference = one_process_results["shared_precompute"]
    alone_disk, alone_memory = reference["texts_embedded"]
    for result in two_process_results:
        shared = result["shared_precompute"]
        assert shared["english"] == reference["english"]  # same rows, same order
        assert torch.allclose(shared["disk"], reference["disk"], atol=1e-6)
        assert torch.allclose(shared["memory"], reference["memory"], atol=1e-6)
        assert shared["memory_fingerprint"] == reference["memory_fingerprint"]
        disk, memory = shared["texts_embedded"]
        assert 0 < disk <= 0.6 * alone_disk and 0 < memory <= 0.6 * alone_memory, (disk, memory, alone_disk)
        got, want = result["shared_train"]["params"], one_process_results["shared_train"]["params"]
        assert (got - want).abs().max() < 1e-5


def test_stream_embedded_in_the_step_of_each_rank(two_process_results):
    """Each rank reads its own shards of the stream (raw captions are never dispatched from rank 0) and its own
    teacher embeds them in its training process."""
    first, second = (result["stream"] for result in two_process_results)
    for result in (first, second):
        assert result["steps"] == 2 and len(result["captions"]) >= 2 * 4  # (accelerate reads one batch ahead)
        assert 0 < result["texts_embedded"] <= 2 * 4
    assert not set(first["captions"]) & set(second["captions"])


def test_deepspeed_zero2_dr_queue_and_resume(workdir):
    """DeepSpeed ZeRO-2 over two CPU ranks (configs/accelerate/deepspeed_zero2.yaml): the DR run logs the losses
    of one process on the whole batch, ends in its weights and queue, and a resume from the half-way checkpoint
    (ZeRO optimizer shards + queue) runs only the remaining steps to the same end. (FSDP is not tested: accelerate
    runs an FSDP config on CPU ranks as plain DDP.)"""
    pytest.importorskip("deepspeed")
    from tests.scripts import sharded_check

    config = os.path.join(os.path.dirname(__file__), "..", "configs", "accelerate", "deepspeed_zero2.yaml")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes", "2",
               "--main_process_port", str(_free_port()), sharded_check.__file__, workdir, "zero2"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"DeepSpeed run failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    reference = sharded_check.run(workdir, "one")
    assert reference["full"]["steps_run"] == sharded_check.STEPS
    for rank in (0, 1):
        got = torch.load(os.path.join(workdir, f"zero2-rank{rank}.pt"))
        assert got["world_size"] == 2
        for run in ("full", "resumed"):
            g, want = got[run], reference["full"]
            assert g["wrapper"] == "DeepSpeedEngine" and g["deepspeed"] and g["world_size"] == 2
            assert sorted(g["logs"]) == list(range(1, sharded_check.STEPS + 1))
            for step, loss in want["logs"].items():
                assert g["logs"][step] == pytest.approx(loss, abs=1e-5), (run, step)
            assert (g["params"] - want["params"]).abs().max() < 1e-5
            assert g["ptr"] == want["ptr"] and torch.allclose(g["queue"], want["queue"], atol=1e-6)
        assert got["resumed"]["steps_run"] == sharded_check.STEPS - sharded_check.SAVE_AT  # it did resume
