"""Timing helpers shared by the benchmarks: CPU seconds of a process and its DataLoader workers, device sync."""

from __future__ import annotations


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (DataLoader workers), user + system."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def sync(device) -> None:
    """Wait for the device's queued work (CUDA), so a wall-clock reading covers it; nothing on a CPU."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize()
