"""The FIFO memory of teacher anchors used by distributional replication (DR)."""

from __future__ import annotations

import torch


class EmbeddingQueue:
    """A ring buffer of the ``size`` most recent teacher anchors.

    ``keys()`` returns the filled rows (order does not matter to the loss); ``enqueue`` writes after the step's
    loss was computed. ``state_dict``/``load_state_dict`` make a resumed run continue with the same memory.
    """

    def __init__(self, size: int, dim: int):
        if size <= 0 or dim <= 0:
            raise ValueError(f"queue size and dim must be positive, got size={size}, dim={dim}")
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
        x = x.detach().float()
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
