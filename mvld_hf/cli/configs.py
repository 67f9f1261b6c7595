"""The paper's configs, shipped inside the package (``mvld_hf/configs/*.yaml``, the repository's ``configs/``):
``mvld-distill --list_configs`` lists them, ``mvld-distill --config clip-l14_xlmr-base_dr`` runs one (a path to
any YAML/JSON file works too, as does the path first: ``examples/distill.py configs/x.yaml``). Imports nothing
heavy."""

from __future__ import annotations

import os

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def packaged_config_dir() -> str:
    """``mvld_hf/configs``: in the repository a link to ``configs/``, in the wheel a copy of its ``*.yaml``."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def packaged_configs() -> dict[str, str]:
    """Name (file name without ``.yaml``) -> path of every shipped config."""
    folder = packaged_config_dir()
    if not os.path.isdir(folder):
        return {}
    return {name[:-5]: os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name.endswith(".yaml")}


def describe(path: str) -> str:
    """A config's first comment line (what it sets up), without the ``#``."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                return line.lstrip("#").strip()
            if line.strip():
                break
    return ""


def list_configs() -> str:
    """The shipped configs, one per line with what each sets up, and how to run one."""
    configs = packaged_configs()
    if not configs:
        return "no configs are shipped with this installation"
    width = max(map(len, configs))
    lines = [f"{name:<{width}}  {describe(path)}" for name, path in configs.items()]
    return "\n".join(["configs shipped with mvld_hf (run one with `mvld-distill --config NAME [--flag value ...]`; "
                      f"they are in {packaged_config_dir()}):", *lines])


def resolve_config(name: str) -> str | None:
    """The file ``--config NAME`` means: an existing path, else a shipped config's name (``.yaml`` optional);
    None when neither."""
    if os.path.isfile(name):
        return name
    configs = packaged_configs()
    stem = name[:-5] if name.endswith(".yaml") else name
    return configs.get(os.path.basename(stem))
