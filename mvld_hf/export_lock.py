"""One export at a time into a folder: the run lock's guarantee (:mod:`mvld_hf.run_lock`) for exports.

Two exports into one new folder each write a staging folder and rename it into place; without a lock both
succeed and the second silently replaces the first. :class:`ExportLock` is a lock file beside the target,
``.NAME.mvld_export.lock`` in its parent folder (the target itself is created by the final rename), holding the
exporting process's pid, host, start time and command. A second export into the same folder while the first runs
is refused with :class:`ExportLockError` naming it; a lock whose process is gone (same host) or that is
unreadable is taken over with a warning, as a run lock is.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from .run_lock import _create, _read_record, describe, holder_is_gone, process_start

logger = logging.getLogger(__name__)


class ExportLockError(FileExistsError):
    """Another export into the same folder is running."""


def lock_path(output_dir: str | os.PathLike) -> str:
    """The lock file of exports into ``output_dir``: ``.NAME.mvld_export.lock`` beside it."""
    path = Path(output_dir).absolute()
    return str(path.parent / f".{path.name}.mvld_export.lock")


class ExportLock:
    """The lock of one export into ``output_dir`` (see the module docstring); a context manager."""

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = os.fspath(output_dir)
        self.path = lock_path(output_dir)
        self.owned = False

    def acquire(self) -> ExportLock:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": process_start(os.getpid()),
                  "time": time.time(), "command": " ".join([os.path.basename(sys.argv[0] or "python")]
                                                           + sys.argv[1:])[:300]}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as handle:
            json.dump(record, handle)
        try:
            for _ in range(20):
                try:
                    _create(tmp, self.path)
                    self.owned = True
                    return self
                except FileExistsError:
                    pass
                holder = _read_record(self.path)
                if holder is None:
                    continue  # released in between
                if not holder_is_gone(holder):
                    raise ExportLockError(
                        f"another export into {self.output_dir} is running ({describe(holder)}): two exports into "
                        "one folder would leave one of them, silently. Wait for it to finish or export into another "
                        f"folder; if that export is gone (another host, a reused pid), delete {self.path}")
                self._take_over(holder)
            raise ExportLockError(f"could not take the export lock {self.path}: other processes keep changing it")
        finally:
            os.unlink(tmp)

    def _take_over(self, stale: dict) -> None:
        aside = f"{self.path}.{os.getpid()}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = _read_record(aside) or {}
        if moved != stale and not holder_is_gone(moved):  # another process took it over first: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        else:
            logger.warning("export into %s: taking over the lock of an export that is gone or unreadable (%s)",
                           self.output_dir, stale.get("unreadable") or describe(stale))
        os.unlink(aside)

    def release(self) -> None:
        if self.owned:
            self.owned = False
            holder = _read_record(self.path)
            if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                os.unlink(self.path)

    def __enter__(self) -> ExportLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
