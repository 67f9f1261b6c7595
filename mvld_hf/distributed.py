"""Cross-process helpers: gather a batch from every rank keeping the gradient of the local slice."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_local_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank in rank order; only this rank's slice carries gradient.

    This is the open_clip recipe (``gather_with_grad=False``): every rank computes the loss of the *global*
    batch, and each one back-propagates through its own rows only. ``torch.distributed.nn.all_gather`` would
    instead sum gradients over ranks. Ranks may hold different numbers of rows (a last, smaller batch).
    """
    if world_size() == 1:
        return x
    rank, world = dist.get_rank(), dist.get_world_size()
    local = x.detach().contiguous()
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
    sizes = [int(s) for s in sizes]
    biggest = max(sizes)
    if x.shape[0] < biggest:
        local = torch.cat([local, local.new_zeros((biggest - x.shape[0], *x.shape[1:]))])
    buffers = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(buffers, local)
    parts = [buf[:n] for buf, n in zip(buffers, sizes)]
    parts[rank] = x
    return torch.cat(parts)


def scale_grad(loss: torch.Tensor, factor: float) -> torch.Tensor:
    """Same value, gradient multiplied by ``factor``.

    DDP averages gradients over ranks (so do FSDP's reduce-scatter and DeepSpeed's data-parallel reduction);
    when every rank computes the global-batch loss through its own slice, the average is the global gradient
    divided by the world size, which this factor undoes.
    """
    if factor == 1:
        return loss
    return loss + (factor - 1) * (loss - loss.detach())
