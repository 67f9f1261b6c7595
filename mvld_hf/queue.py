"""The FIFO memory of teacher anchors used by distributional replication (DR)."""

from __future__ import annotations

import os

import torch


def physical_memory_bytes() -> int | None:
    """This machine's physical memory (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n < 1e12 else f"{n / 1e12:,.1f} TB"


def check_queue_memory(size: int, dim: int, memory: int | None = None) -> int:
    """The bytes a ``size`` x ``dim`` float32 queue takes; refused when that is more than half this machine's
    physical memory (checkpoints copy the queue to host memory and save it), before anything is allocated."""
    needed = int(size) * int(dim) * 4
    memory = physical_memory_bytes() if memory is None else memory
    if memory is not None and needed > memory // 2:
        raise ValueError(f"queue_size={size} anchors of {dim} dims take {needed:,} bytes ({_gb(needed)}) as float32, "
                         f"more than half of this machine's {_gb(memory)} of memory (checkpoints copy the queue to "
                         "host memory): lower queue_size (the default is 4,096; SEED used 65,536 and CompRess 128,000)")
    return needed


class EmbeddingQueue:
    """A ring buffer of the ``size`` most recent teacher anchors.

    ``keys()`` returns the filled rows (order does not matter to the loss); ``enqueue`` writes after the step's
    loss was computed. ``state_dict``/``load_state_dict`` make a resumed run continue with the same memory.
    """

    def __init__(self, size: int, dim: int):
        if size <= 0 or dim <= 0:
            raise ValueError(f"queue size and dim must be positive, got size={size}, dim={dim}")
        check_queue_memory(size, dim)
        self.size, self.dim = int(size), int(dim)
        self.buffer: torch.Tensor | None = None
        self.ptr = 0
        self.filled = 0

    def __len__(self) -> int:
        return self.filled

    def keys(self, device=None) -> torch.Tensor:
        if self.buffer is None:
            return torch.empty(0, self.dim, device=device)
        keys = self.buffer[: self.filled]
        return keys if device is None else keys.to(device)

    @torch.no_grad()
    def enqueue(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"queue holds [*, {self.dim}] rows, got {tuple(x.shape)}")
        x = x.float()  # no autograd history under no_grad: the buffer never joins a graph (tested)
        if self.buffer is None:
            self.buffer = torch.zeros(self.size, self.dim, device=x.device)
        n = x.shape[0]
        if n >= self.size:
            self.buffer.copy_(x[-self.size :])
            self.ptr, self.filled = 0, self.size
            return
        idx = (self.ptr + torch.arange(n, device=x.device)) % self.size
        self.buffer[idx] = x.to(self.buffer.device)
        self.ptr = (self.ptr + n) % self.size
        self.filled = min(self.filled + n, self.size)

    def state_dict(self) -> dict:
        buffer = None if self.buffer is None else self.buffer[: self.filled].cpu().clone()
        return {"size": self.size, "dim": self.dim, "ptr": self.ptr, "filled": self.filled, "buffer": buffer}

    def load_state_dict(self, state: dict, device=None) -> None:
        if state["size"] != self.size or state["dim"] != self.dim:
            raise ValueError(f"checkpointed queue is {state['size']}x{state['dim']}, this run's is "
                             f"{self.size}x{self.dim}: resume with the same queue_size and teacher")
        self.ptr, self.filled = int(state["ptr"]), int(state["filled"])
        if state["buffer"] is None:
            self.buffer = None
            return
        self.buffer = torch.zeros(self.size, self.dim, device=device)
        self.buffer[: self.filled] = state["buffer"].to(self.buffer.device)
