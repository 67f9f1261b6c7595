"""Teacher inputs prepared in parallel, ahead of the forward pass: one place for the DataLoader that decodes and
preprocesses images (and tokenizes captions) in worker processes while the calling process runs the teacher.

- :func:`iter_prepared_batches` yields ``prepare(get_batch(start, stop))`` for consecutive batches of ``range(n)``
  in order, computed by ``num_workers`` DataLoader worker processes (``0``: in this process, as before), with
  pinned memory only when the consumer is a CUDA device.
- :func:`encode_prepared` runs ``encode`` on each prepared batch in the calling process, so the teacher never
  leaves it (no CUDA in forked workers, no teacher copy per worker).
- :func:`image_encoder_parts` splits an image encoder into (prepare, encode) when it is a teacher's
  ``encode_image`` (or an object with ``prepare_images``/``encode_prepared_images``): the image processor then
  runs in the workers too; any other callable gets decoding in the workers and its own call here.
- :func:`load_image_processor` picks the torchvision-backed image processor where torchvision imports and the
  PIL one otherwise (torchvision from PyPI does not import beside every torch build, e.g. a CPU-only one).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["CaptionTokens", "PreparedBatches", "default_num_workers", "encode_prepared", "image_encoder_parts",
           "image_processor_backend", "iter_prepared_batches", "load_image_processor", "torchvision_available"]

# below this many batches, starting worker processes costs more than it saves
MIN_BATCHES_FOR_WORKERS = 4


@functools.lru_cache(maxsize=1)
def torchvision_available() -> bool:
    """True when ``torchvision`` imports beside this torch (it does not beside every build)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - an ImportError, or a RuntimeError from a mismatched torch build
        return False
    return True


def image_processor_backend() -> str:
    """``"torchvision"`` where torchvision imports (about 2.7x faster per process), else ``"pil"``."""
    return "torchvision" if torchvision_available() else "pil"


def load_image_processor(name_or_path: str, revision: str | None = None, **kwargs):
    """``AutoImageProcessor.from_pretrained`` with the torchvision backend where it imports, the PIL one otherwise
    (no warning about a missing torchvision). Raises what ``from_pretrained`` raises for a model without one."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(name_or_path, revision=revision,
                                                  backend=image_processor_backend(), **kwargs)
    except TypeError:  # an older transformers without backend=: use_fast picks the torchvision class there
        return AutoImageProcessor.from_pretrained(name_or_path, revision=revision,
                                                  use_fast=torchvision_available(), **kwargs)


def default_num_workers(n_batches: int | None = None) -> int:
    """Worker processes for preparing ``n_batches`` batches: none for a few batches, else up to 8 but at least
    one core left to the process that runs the model. ``MVLD_HF_DATA_WORKERS`` overrides it."""
    env = os.environ.get("MVLD_HF_DATA_WORKERS")
    if env is not None:
        try:
            workers = int(env)
        except ValueError as err:
            raise ValueError(f"MVLD_HF_DATA_WORKERS must be an integer, got {env!r}") from err
        if workers < 0:
            raise ValueError(f"MVLD_HF_DATA_WORKERS must be >= 0, got {workers}")
        return workers
    if n_batches is not None and n_batches < MIN_BATCHES_FOR_WORKERS:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores - 1))


class _Batches(torch.utils.data.Dataset):
    """Item ``i`` is ``prepare(get_batch(a, b))`` for rows ``[a, b) = [start + i * batch_size, ...)`` of
    ``range(n)``."""

    def __init__(self, n: int, batch_size: int, get_batch: Callable[[int, int], Any],
                 prepare: Callable[[Any], Any] | None, start: int = 0):
        self.n, self.batch_size, self.get_batch, self.prepare, self.start = n, batch_size, get_batch, prepare, start

    def __len__(self) -> int:
        return max(0, -(-(self.n - self.start) // self.batch_size))

    def __getitem__(self, i: int):
        start = self.start + i * self.batch_size
        try:
            items = self.get_batch(start, min(start + self.batch_size, self.n))
            return items if self.prepare is None else self.prepare(items)
        except Exception as err:
            if torch.utils.data.get_worker_info() is None:
                raise
            return _WorkerError.wrap(err)


class _WorkerError:
    """An exception raised in a worker, sent back as it is (the DataLoader's own wrapper re-raises it under a
    "Caught ... in DataLoader worker process" message): raised again in the calling process with its own type
    and message, the worker's traceback added as a note."""

    def __init__(self, error: BaseException, trace: str):
        self.error, self.trace = error, trace

    @classmethod
    def wrap(cls, error: Exception):
        import pickle
        import traceback

        try:
            pickle.loads(pickle.dumps(error))
        except Exception:  # noqa: BLE001 - an exception that cannot cross processes: the DataLoader's wrapper then
            raise error from None
        return cls(error, "".join(traceback.format_exception(error)))

    def reraise(self):
        error = self.error
        if hasattr(error, "add_note"):
            error.add_note(f"(raised in a DataLoader worker process:\n{self.trace})")
        raise error


def _keep(batch):
    return batch


def iter_prepared_batches(n: int, get_batch: Callable[[int, int], Any], batch_size: int,
                          prepare: Callable[[Any], Any] | None = None, num_workers: int | None = None,
                          device=None, start: int = 0, prefetch_factor: int = 2) -> Iterator:
    """Yield ``prepare(get_batch(a, min(a + batch_size, n)))`` for ``a = start, start + batch_size, ...`` in order.

    With ``num_workers > 0`` the batches are made by that many DataLoader worker processes (each with one torch
    thread), ``prefetch_factor`` batches ahead per worker, while the caller consumes earlier ones; ``None`` picks
    :func:`default_num_workers`. Tensors come back in pinned memory when ``device`` is a CUDA device. Errors
    raised by ``get_batch``/``prepare`` in a worker are raised here with the worker's traceback.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batches = _Batches(n, batch_size, get_batch, prepare, start)
    if num_workers is None:
        num_workers = default_num_workers(len(batches))
    num_workers = min(num_workers, max(len(batches), 0))
    if num_workers <= 0:
        for i in range(len(batches)):
            yield batches[i]
        return
    pin = device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=num_workers,
                                         collate_fn=_keep, pin_memory=pin, prefetch_factor=prefetch_factor)
    for batch in loader:
        if isinstance(batch, _WorkerError):
            batch.reraise()
        yield batch


def encode_prepared(encode: Callable[[Any], torch.Tensor], n: int, get_batch: Callable[[int, int], Any],
                    batch_size: int, prepare: Callable[[Any], Any] | None = None, num_workers: int | None = None,
                    device=None) -> list[torch.Tensor]:
    """``[encode(prepared batch) for every batch]``, the batches prepared by :func:`iter_prepared_batches`."""
    return [encode(batch) for batch in iter_prepared_batches(n, get_batch, batch_size, prepare, num_workers, device)]


class PreparedBatches:
    """Row ranges of a dataset prepared ahead by DataLoader workers for a caller that asks for them in order by
    range, as ``datasets.map(batched=True)`` hands its batches to a function: :meth:`take` returns the batch the
    workers made when ``[start, stop)`` is the next one they were making, else restarts them from ``start`` (a new
    pass, another part of the dataset); a range they cannot serve (an odd size) is prepared here. Workers start
    on the first :meth:`take` (nothing runs for a result ``datasets`` reads from its cache)."""

    def __init__(self, n: int, get_batch: Callable[[int, int], Any], batch_size: int,
                 prepare: Callable[[Any], Any] | None = None, num_workers: int | None = None, device=None):
        self.n, self.get_batch, self.batch_size, self.prepare = n, get_batch, batch_size, prepare
        self.num_workers, self.device = num_workers, device
        self._batches: Iterator | None = None
        self._next: int | None = None

    def take(self, start: int, stop: int):
        """``prepare(get_batch(start, stop))``, from the workers when they can serve it."""
        if stop - start != min(self.batch_size, self.n - start):  # not a batch the workers would make
            items = self.get_batch(start, stop)
            return items if self.prepare is None else self.prepare(items)
        if start != self._next:
            self.close()
            self._batches = iter_prepared_batches(self.n, self.get_batch, self.batch_size, self.prepare,
                                                  self.num_workers, self.device, start=start)
        self._next = stop
        return next(self._batches)

    def close(self) -> None:
        """Stop the workers (also when the object is garbage collected)."""
        if self._batches is not None:
            self._batches.close()
        self._batches, self._next = None, None


class CaptionTokens:
    """The CPU half of embedding a batch of captions, for DataLoader workers (picklable): the distinct captions
    (``"texts"``), every caption's position among them (``"index"``) and the teacher's tokens of the distinct ones
    in chunks of ``chunk_size`` (``"chunks"``, numpy arrays: small arrays cross processes faster pickled than as
    shared-memory tensors). ``tokenize`` is a teacher's ``text_tokenizer()``."""

    def __init__(self, tokenize: Callable[[list[str]], dict], chunk_size: int = 64):
        self.tokenize, self.chunk_size = tokenize, chunk_size

    def __call__(self, texts: list[str]) -> dict[str, Any]:
        import numpy as np

        position: dict[str, int] = {}
        index = np.fromiter((position.setdefault(t, len(position)) for t in texts), dtype=np.int64, count=len(texts))
        unique = list(position)
        chunks = [{k: np.asarray(v) for k, v in self.tokenize(unique[i:i + self.chunk_size]).items()}
                  for i in range(0, len(unique), self.chunk_size)]
        return {"texts": unique, "index": index, "chunks": chunks}


def image_encoder_parts(encode_image) -> tuple[Callable | None, Callable, Any]:
    """``(prepare, encode, device)`` for an image encoder. A teacher (or its bound ``encode_image``, or any object
    with ``prepare_images`` and ``encode_prepared_images``) splits into its preprocessing, which can run in
    DataLoader workers, and its forward on ``device``; any other callable is ``(None, encode_image, None)``: only
    reading and decoding the images can then run in workers."""
    owner = getattr(encode_image, "__self__", None)
    candidate = owner if owner is not None and getattr(encode_image, "__name__", None) == "encode_image" \
        else encode_image
    prepare = getattr(candidate, "prepare_images", None)
    forward = getattr(candidate, "encode_prepared_images", None)
    if callable(prepare) and callable(forward) and getattr(candidate, "supports_images", True):
        return prepare, forward, getattr(candidate, "device", None)
    if not callable(encode_image):
        raise TypeError(f"expected an image encoder (a callable or a teacher), got {type(encode_image).__name__}")
    return None, encode_image, None
