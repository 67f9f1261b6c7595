"""Where an export is written: the target folder's checks, a hidden staging folder beside it owned by this
process (pid, host and start time in an owner file, so a later export can remove a killed export's leftover),
the final atomic rename, and the bytes each route takes on disk."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from .run_lock import process_alive, process_start
from .student_loading import read_json

logger = logging.getLogger(__name__)

#: the file naming the process that writes a staging folder
OWNER_FILE = ".mvld_export_owner"


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def route_sizes(folder) -> dict[str, int]:
    """Bytes on disk of an exported folder: ``text`` and ``image`` routes, and ``total``."""
    folder = Path(folder)
    router = read_json(str(folder / "router_config.json"))
    sizes = {"text": 0, "image": 0, "total": _dir_bytes(folder)}
    if router is None:  # text-only layout: everything but the card (and the ONNX files) is the text route
        sizes["text"] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()
                            and f.name not in ("README.md", OWNER_FILE)
                            and f.relative_to(folder).parts[0] != "onnx")
        return sizes
    for route, module_ids in router["structure"].items():
        sizes[route] = sizes.get(route, 0) + sum(_dir_bytes(folder / m) for m in module_ids)
    return sizes


def check_output_dir(output_dir: str, overwrite: bool) -> None:
    """Refuse a target that is a file, or a non-empty folder unless it is an earlier export and ``overwrite``."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{output_dir!r} exists and is not a directory")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{output_dir!r} cannot be created: {str(parent)!r} is a file, not a folder; "
                                 "choose a path whose parent folders are folders")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output_dir!r} is not empty; pass overwrite=True (--overwrite) to replace an "
                                  "earlier export")
        if not (path / "modules.json").is_file():
            raise FileExistsError(f"refusing to overwrite {output_dir!r}: it is not empty and holds no earlier "
                                  "sentence-transformers export (no modules.json)")


def remove_stale_staging(output_dir: str) -> list[str]:
    """Remove the hidden ``.NAME.partial-*`` / ``.NAME.old-*`` folders that a killed export left next to
    ``output_dir``: those whose owning process (recorded on this host) is gone. Returns what was removed."""
    path = Path(output_dir).absolute()
    if not path.parent.is_dir():
        return []
    removed = []
    for leftover in path.parent.glob(f".{path.name}.*-*"):
        if not leftover.is_dir() or not leftover.name.startswith((f".{path.name}.partial-", f".{path.name}.old-")):
            continue
        owner = read_json(str(leftover / OWNER_FILE)) or {}
        pid, host = owner.get("pid"), owner.get("host")
        if isinstance(pid, int) and host == socket.gethostname() and process_alive(pid, owner.get("process_start")):
            continue  # a live export is writing it
        if not owner and leftover.name.startswith(f".{path.name}.partial-"):
            import time

            if time.time() - leftover.stat().st_mtime < 60:  # just created: its owner file may not be there yet
                continue
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(str(leftover))
    if removed:
        logger.info("removed %d folder(s) left by an interrupted export: %s", len(removed), ", ".join(removed))
    return removed


def staging_dir(output_dir: str) -> str:
    """An empty hidden folder next to ``output_dir`` (same filesystem, so the final rename is atomic), with the
    permissions of a folder made by ``mkdir`` (``mkdtemp`` makes 0700), and an owner file naming this process
    so that a later export can tell a killed export's leftover from a live one."""
    path = Path(output_dir).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output_dir)
    staging = tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    with open(os.path.join(staging, OWNER_FILE), "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "process_start": process_start(os.getpid())}, f)
    return staging


def move_into_place(staging: str, output_dir: str) -> None:
    """Replace ``output_dir`` (absent, empty, or an earlier export already checked) by ``staging``."""
    path = Path(output_dir)
    old = None
    if path.is_dir():
        if any(path.iterdir()):
            old = tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.absolute().parent)
            os.rmdir(old)
            os.replace(path, old)
        else:
            path.rmdir()
    os.replace(staging, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
