import math

import pytest
import torch

from mvld_hf import EmbeddingQueue


def test_fifo_keeps_the_most_recent_rows():
    q = EmbeddingQueue(size=4, dim=2)
    assert q.keys().shape == (0, 2)
    for step in range(3):  # 6 rows through a queue of 4
        q.enqueue(torch.full((2, 2), float(step)))
    assert len(q) == 4
    assert sorted(q.keys()[:, 0].tolist()) == [1.0, 1.0, 2.0, 2.0]


def test_batch_larger_than_queue_keeps_its_tail():
    q = EmbeddingQueue(size=3, dim=1)
    q.enqueue(torch.arange(5.0).unsqueeze(1))
    assert sorted(q.keys()[:, 0].tolist()) == [2.0, 3.0, 4.0]


def test_state_dict_round_trip_continues_identically():
    a, b = EmbeddingQueue(6, 3), EmbeddingQueue(6, 3)
    torch.manual_seed(0)
    for _ in range(2):
        a.enqueue(torch.randn(4, 3))
    b.load_state_dict(a.state_dict())
    nxt = torch.randn(4, 3)
    a.enqueue(nxt)
    b.enqueue(nxt)
    assert torch.equal(a.keys(), b.keys()) and a.ptr == b.ptr


def test_errors():
    with pytest.raises(ValueError):
        EmbeddingQueue(0, 3)
    q = EmbeddingQueue(4, 3)
    with pytest.raises(ValueError, match="rows"):
        q.enqueue(torch.randn(2, 5))
    with pytest.raises(ValueError, match="queue_size"):
        EmbeddingQueue(8, 3).load_state_dict(q.state_dict())


def test_enqueue_keeps_no_autograd_history():
    """enqueue runs under no_grad: anchors that require grad are stored as plain values, so no step's graph reaches
    the memory (without no_grad the in-place write would make the buffer require grad)."""
    x = torch.randn(2, 3, requires_grad=True)
    q = EmbeddingQueue(4, 3)
    q.enqueue(x * 2)
    q.enqueue(torch.randn(4, 3, requires_grad=True))  # the batch >= size path
    q2 = EmbeddingQueue(4, 3)
    q2.enqueue(x * 2)
    for queue in (q, q2):
        keys = queue.keys()
        assert not keys.requires_grad and keys.grad_fn is None and not queue.buffer.requires_grad
    assert torch.equal(q2.keys(), (x * 2).detach())


def test_a_queue_larger_than_memory_is_refused_before_allocation():
    from mvld_hf.queue import check_queue_memory

    assert check_queue_memory(4096, 512, memory=8 * 2**30) == 4096 * 512 * 4
    with pytest.raises(ValueError, match=r"queue_size=16000000000 anchors of 512 dims take 32,768,000,000,000 bytes "
                                         r"\(32.8 TB\) as float32, more than half of this machine's 8.6 GB of memory"):
        check_queue_memory(16_000_000_000, 512, memory=8 * 2**30)
    with pytest.raises(ValueError, match="lower queue_size"):
        EmbeddingQueue(16_000_000_000, 512)  # refused up front (no 32 TB allocation at the first enqueue)


def test_evaluation_leaves_the_training_queue_alone(tokenizer, toy_dataset, teacher, tmp_path):
    """The trainer's evaluation (eval loss through compute_loss) reads the DR queue but must not write into it:
    held-out anchors would become training negatives and a resumed run would differ."""
    from mvld_hf import DistillationTrainer, precompute_teacher_embeddings
    from mvld_hf.testing import tiny_student
    from tests.helpers import training_args

    data = precompute_teacher_embeddings(toy_dataset.remove_columns("image"), teacher)
    args = training_args(tmp_path, method="dr", per_device_train_batch_size=8, per_device_eval_batch_size=8,
                         queue_size=64, max_steps=2, learning_rate=1e-3)
    trainer = DistillationTrainer(model=tiny_student(tokenizer, 16), processing_class=tokenizer, args=args,
                                  train_dataset=data, eval_dataset=data.select(range(16)))
    trainer.train()
    before = trainer.queue.state_dict()
    assert before["filled"] == 16  # the two training batches
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"])
    after = trainer.queue.state_dict()
    assert (after["ptr"], after["filled"]) == (before["ptr"], before["filled"])
    assert torch.equal(after["buffer"], before["buffer"])
