"""One run at a time per ``output_dir``: a lock file naming the run that holds the folder.

Two runs writing checkpoints into one folder mix them (``checkpoint-5`` of one run, ``checkpoint-10`` of the
other, every manifest valid). :class:`RunLock` prevents it: the main process of a run creates
``<output_dir>/.mvld_run.lock`` (its pid, host, start time and command) atomically before training and removes it
when training ends; a second run into the same folder is refused with :class:`RunLockError`, one line naming the
holder. The module uses the standard library only.

Stale-lock policy: a lock whose holder is gone does not block the folder forever.

- Same host: the holder's pid is checked. A pid that no longer exists (a run killed by ``kill -9``, a crashed
  machine's leftover), or that now belongs to another process (its start time, read from ``/proc``, differs from
  the recorded one), is gone: the lock is taken over with a warning naming the old holder.
- An unreadable lock file (not a JSON record with a pid and host: garbage, an empty or truncated file still so
  after a moment) names no run: it is taken over like a dead run's, with a warning saying it was unreadable.
- Another host (a shared file system): its pids cannot be checked from here, so the lock is respected; the
  refusal says to delete the lock file once that run is known to be gone.
- A process that already holds the lock may take it again (the command line and the trainer both take it);
  only the taker that created the file removes it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time

logger = logging.getLogger(__name__)
LOCK_FILE = ".mvld_run.lock"


class RunLockError(RuntimeError):
    """``output_dir`` is held by another run that is (or may be) alive."""


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot, Linux ``/proc``), None where unavailable:
    with the pid it identifies a process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether the process ``pid`` (started at ``start``, see :func:`process_start`) still runs on this host: the
    one pid-liveness check of the package (run locks, export staging folders, study cells). A pid reused by
    another process reads as gone when ``start`` was recorded."""
    if os.name == "nt":  # os.kill(pid, 0) would end it there: assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    now = process_start(pid)
    return start is None or now is None or now == start


def describe(holder: dict) -> str:
    """``pid 123 on host h since 2026-12-04 18:10:00 UTC (python train.py ...)``."""
    if holder.get("unreadable"):
        return f"an unreadable lock file: {holder['unreadable']}"
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.get("time", 0)))
    command = holder.get("command") or "?"
    return f"pid {holder.get('pid')} on host {holder.get('host')} since {started} ({command})"


def _read_record(path: str) -> dict | None:
    """The record in the lock file ``path``, None when there is none; an unreadable one (not JSON, not a mapping
    with an integer pid and a host) is read again for up to a second while it is fresh (a lock being written where
    the file system has no hard links), then reads as ``{"pid": None, "host": None, "unreadable": why}``."""
    for _ in range(5):
        holder = _read_once(path)
        if holder is None or not holder.get("unreadable"):
            return holder
        try:
            fresh = time.time() - os.path.getmtime(path) < 2.0
        except OSError:
            fresh = False
        if not fresh:
            break
        time.sleep(0.2)
    return holder


def _read_once(path: str) -> dict | None:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(1 << 16)
    except FileNotFoundError:
        return None
    except OSError as err:
        return {"pid": None, "host": None, "unreadable": f"it cannot be read ({err.strerror or err})"}
    try:
        holder = json.loads(raw.decode("utf-8"))
    except ValueError:
        why = f"not JSON ({raw[:40].decode('utf-8', 'replace')!r})" if raw.strip() else "it is empty"
        return {"pid": None, "host": None, "unreadable": why}
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int) or not holder.get("host"):
        return {"pid": None, "host": None, "unreadable": f"no pid and host in it ({str(holder)[:40]!r})"}
    return holder


def read_holder(output_dir: str) -> dict | None:
    """The lock file's record (pid, host, process_start, time, command), None when the folder is not locked; an
    unreadable lock file reads as unreadable (see :func:`_read_record`)."""
    return _read_record(os.path.join(output_dir, LOCK_FILE))


def holder_is_gone(holder: dict) -> bool:
    """A holder on this host whose process no longer runs (see the module's stale-lock policy)."""
    if holder.get("unreadable"):
        return True  # names no run (see the module's stale-lock policy)
    pid = holder.get("pid")
    return (holder.get("host") == socket.gethostname() and isinstance(pid, int)
            and not process_alive(pid, holder.get("process_start")))


def live_holder(output_dir: str) -> dict | None:
    """The holder of ``output_dir``'s lock when it is another process that may be alive, else None (a cheap check
    for the command line, before any work; it takes nothing)."""
    holder = read_holder(output_dir)
    if holder is None or holder_is_gone(holder) or _is_me(holder):
        return None
    return holder


def _is_me(holder: dict) -> bool:
    return holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid()


def refusal(output_dir: str, holder: dict) -> str:
    """The one-line refusal naming the holder and the way out."""
    return (f"output_dir {output_dir} is in use by another run ({describe(holder)}): two runs in one folder would "
            f"mix their checkpoints. Wait for it to finish or choose another --output_dir; if that run is gone "
            f"(another host, a reused pid), delete {os.path.join(output_dir, LOCK_FILE)}")


def _create(tmp: str, path: str) -> None:
    """Create ``path`` holding ``tmp``'s record, atomically; FileExistsError if it exists. A hard link never leaves
    a half-written lock; where the file system has no hard links, an exclusive create written at once."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network or FUSE file systems)
        with open(tmp, "rb") as source:
            record = source.read()
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(handle, "wb") as target:
            target.write(record)


class RunLock:
    """The lock of one run on ``output_dir`` (see the module docstring); a context manager.

    ``acquire`` raises :class:`RunLockError` while another live run holds it; ``release`` removes the lock file
    if this object created it."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILE)
        self.owned = False

    def acquire(self) -> RunLock:
        os.makedirs(self.output_dir, exist_ok=True)
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
                holder = read_holder(self.output_dir)
                if holder is None:
                    continue  # released in between: try again
                if _is_me(holder):
                    return self  # this process holds it already (the command line took it before the trainer)
                if not holder_is_gone(holder):
                    raise RunLockError(refusal(self.output_dir, holder))
                self._take_over(holder)
            raise RunLockError(f"could not take the lock {self.path}: other processes keep changing it")
        finally:
            os.unlink(tmp)

    def _take_over(self, stale: dict) -> None:
        """Move the stale lock aside; if what was moved is not the stale lock (another process took it over
        first), put it back."""
        aside = f"{self.path}.{os.getpid()}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = _read_record(aside) or {}
        if moved != stale and not holder_is_gone(moved):
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        elif stale.get("unreadable"):
            logger.warning("output_dir %s: taking over an unreadable lock file %s (%s): it names no live run",
                           self.output_dir, self.path, stale["unreadable"])
        else:
            logger.warning("output_dir %s: taking over the lock of a run that is gone (%s)", self.output_dir,
                           describe(stale))
        os.unlink(aside)

    def release(self) -> None:
        if self.owned:
            self.owned = False
            holder = read_holder(self.output_dir)
            if holder is not None and _is_me(holder):
                os.unlink(self.path)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_output_dir(output_dir: str, saves: bool, device=None) -> RunLock | None:
    """The lock of a (possibly multi-process) run: the saving process (``args.should_save``) takes it, and every
    rank learns whether it was refused (one all-reduce when ``torch.distributed`` runs), so a refusal stops all
    ranks instead of leaving the others waiting in a collective. Returns the taken lock (None on other ranks)."""
    lock, refused = (RunLock(output_dir), None) if saves else (None, None)
    try:
        if lock is not None:
            lock.acquire()
    except RunLockError as err:
        refused = err
    import torch.distributed as dist  # here: the module itself stays importable without torch

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        import torch

        ok = torch.tensor(float(refused is None), device=device)
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if not bool(ok) and refused is None:
            refused = RunLockError(f"output_dir {output_dir} is in use by another run (the main process's error "
                                   "names it)")
    if refused is not None:
        raise refused
    return lock
