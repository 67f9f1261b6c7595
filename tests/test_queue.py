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
