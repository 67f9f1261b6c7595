"""The one table of distillation methods: everything about a method lives on its :class:`MethodSpec` (code,
names, loss function, inputs, the ``DistillationArguments`` fields and the method's own hyperparameters it reads,
the negatives it needs, whether it is one of the paper's five, its citation).

Config validation (:func:`parse_method`), the trainer's loss dispatch, the batch-size check, the model card's
method names and citations, the study's single methods and the benchmarks all read :data:`METHODS`. A method of
one's own is a :class:`MethodSpec` passed to :func:`register_method` (validated like the built-ins); a process
started by ``mvld-distill`` or a study cell imports the modules named in ``$MVLD_HF_METHODS`` first
(:func:`load_method_modules`), so a module that registers on import reaches every run.

The embeddings a loss can take (all ``[batch, dim]``, after any cross-process gather; :data:`INPUTS`):

- ``s``: the student's embeddings of the training captions;
- ``s_en``: the student's embeddings of the English captions of the same rows (ED);
- ``t``: the teacher's embeddings of the English captions (the teacher side of SD and DR);
- ``a``: the anchors (``t`` with ``anchor="text"``, the teacher's image embeddings with ``anchor="image"``);
- ``keys``: the DR queue's anchors (the trainer keeps the queue).

>>> import torch
>>> from mvld_hf import DistillationArguments
>>> args = DistillationArguments(output_dir="out", method="fd", report_to="none")
>>> s = torch.ones(2, 4)
>>> METHODS["fd"].compute({"s": s, "a": s}, args)["loss"]
tensor(0.)
>>> METHODS["dr"].display_name, METHODS["dr"].uses_queue
('distributional replication (DR)', True)
>>> PAPER_METHODS
('fd', 'ed', 'sd', 'mcl', 'dr')
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .contrastive import contrastive
from .distributional_replication import distributional_replication
from .dr_bidirectional import dr_bidirectional
from .dr_geometry import DEFAULT_GEOMETRY_WEIGHT, dr_geometry
from .english_control import english_control
from .feature_distillation import feature_distillation
from .soft_logit import soft_logit

__all__ = ["INPUTS", "METHODS", "METHODS_ENV", "PAPER_CITATION", "PAPER_COMBINATIONS", "PAPER_METHODS",
           "Hyperparameter", "MethodSpec", "citations", "load_method_modules", "parse_method", "positive_number",
           "register_method", "unregister_method", "validate_method"]

PAPER_CITATION = """@article{thongwat2025distilling,
  title         = {Distilling Multilingual Vision-Language Models: When Smaller Models Stay Multilingual},
  author        = {Thongwat, Jhayahgrit and Payoungkhamdee, Patomporn and Limkonchotiwat, Peerat and Chumpu, R.
                   and Nutanong, S. and Sriratanawilai, S.},
  journal       = {arXiv preprint arXiv:2510.26271},
  year          = {2025},
  eprint        = {2510.26271},
  archivePrefix = {arXiv}
}"""
#: the embeddings a loss can name in ``MethodSpec.inputs`` (see the module docstring)
INPUTS = ("s", "s_en", "t", "a", "keys")
#: environment variable: comma-separated modules (``my_pkg.methods``) or ``.py`` files that register methods
METHODS_ENV = "MVLD_HF_METHODS"
_CODE = re.compile(r"^[a-z][a-z_]*$")


def positive_number(name: str, value) -> None:
    """The default check of a :class:`Hyperparameter`: a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class Hyperparameter:
    """A keyword of one method's loss that a run sets through ``DistillationArguments.method_kwargs``
    (``{"drg": {"geometry_weight": 0.5}}``; ``--method_kwargs '{"drg": {"geometry_weight": 0.5}}'``).

    Attributes:
        default: the value when the run does not set it.
        help: one line: what it weighs or sets.
        check: ``check(name, value)`` raises ``ValueError`` for a value the loss cannot take
            (default: :func:`positive_number`).
    """

    default: Any
    help: str
    check: Callable[[str, Any], None] = positive_number


@dataclass(frozen=True)
class MethodSpec:
    """One distillation method.

    Attributes:
        code: the name in ``DistillationArguments.method`` (``"dr"``): lower-case letters and ``_``.
        display_name: how model cards and reports write it.
        description: one line: what it minimises.
        loss: the pure loss function; returns a dict with ``"loss"`` (a scalar tensor) and named parts, every
            one of which the trainer logs (``loss_<code>``, ``loss_<code>_<part>``).
        inputs: the embeddings passed positionally to ``loss`` (names in :data:`INPUTS`).
        arguments: ``loss`` keyword -> the ``DistillationArguments`` field it comes from (shared settings such as
            the temperatures).
        hyperparameters: ``loss`` keyword -> :class:`Hyperparameter`: settings of this method alone, set per run
            through ``DistillationArguments.method_kwargs``.
        negatives: what the method compares each caption with among *other* rows (the batch's, or the queue's
            when ``inputs`` has ``keys``), in words for error messages; ``None``: it needs no other rows (FD, ED).
            A method with batch negatives refuses a global batch of one row.
        paper: one of the five methods of arXiv 2510.26271 (the study reads combinations against them).
        citation: BibTeX of the paper the method is taken from (``None``: mvld_hf's own, not from a paper); the
            model card prints it.
        mse_term: the loss is an MSE to the anchors (FD, ED): ``projection_init="auto"`` starts a
            from-scratch student's outputs at the anchors' mean (see ``mvld_hf.student_init.projection_init_mode``).
        includes: codes of other methods whose whole loss this one's contains (DRG and DRB contain DR):
            a sum that counts one of them twice (``dr+drg``, ``drg+drb``) is said exactly (:func:`double_counted`).
    """

    code: str
    display_name: str
    description: str
    loss: Callable[..., dict]
    inputs: tuple[str, ...]
    arguments: dict[str, str] = field(default_factory=dict)
    citation: str | None = PAPER_CITATION
    mse_term: bool = False
    hyperparameters: dict[str, Hyperparameter] = field(default_factory=dict)
    negatives: str | None = None
    paper: bool = False
    includes: tuple[str, ...] = ()

    @property
    def needs_english_captions(self) -> bool:
        """The student also embeds the English captions (``s_en``)."""
        return "s_en" in self.inputs

    @property
    def needs_teacher_text(self) -> bool:
        """The teacher's English-caption embeddings ``t`` are needed whatever the anchor."""
        return "t" in self.inputs

    @property
    def uses_queue(self) -> bool:
        """The trainer keeps a FIFO queue of anchors for this method (``keys``)."""
        return "keys" in self.inputs

    @property
    def needs_batch_negatives(self) -> bool:
        """Its negatives are the other rows of the (global) batch: a batch of one row leaves nothing to compare."""
        return self.negatives is not None and not self.uses_queue

    def method_kwargs(self, overrides: dict | None = None) -> dict:
        """This method's hyperparameters: the defaults updated with ``overrides``, each checked."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.hyperparameters))
        if unknown:
            known = ", ".join(self.hyperparameters) or "none"
            raise ValueError(f"method {self.code!r} has no hyperparameter {', '.join(map(repr, unknown))} "
                             f"(its hyperparameters: {known})")
        values = {name: overrides.get(name, hp.default) for name, hp in self.hyperparameters.items()}
        for name, value in values.items():
            self.hyperparameters[name].check(f"{self.code}.{name}", value)
        return values

    def compute(self, embeddings: dict, args) -> dict:
        """``loss(*embeddings[inputs], **{keyword: args.<field>}, **hyperparameters)``; the hyperparameters
        come from ``args.method_kwargs[code]`` over their defaults."""
        overrides = (getattr(args, "method_kwargs", None) or {}).get(self.code)
        return self.loss(*(embeddings[name] for name in self.inputs),
                         **{keyword: getattr(args, name) for keyword, name in self.arguments.items()},
                         **self.method_kwargs(overrides))


def non_negative_number(name: str, value) -> None:
    """A :class:`Hyperparameter` check: a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


#: FD's and ED's MSE options (see :func:`mvld_hf.losses.feature_distillation`); the defaults are the plain MSE
_MSE_OPTIONS = {
    "centered_weight": Hyperparameter(1.0, "weight of the MSE's batch-centred part (1 with mean_weight 1: plain MSE)",
                                      non_negative_number),
    "mean_weight": Hyperparameter(1.0, "weight of the MSE's batch-mean part (the mean offset to the anchors)",
                                  non_negative_number),
    "anchor_centering": Hyperparameter(0.0, "share of the batch's anchor mean taken off the targets",
                                       non_negative_number),
    "whitening": Hyperparameter(0.0, "0: plain MSE; > 0: MSE weighted by the inverse of the anchors' second "
                                     "moment, shrunk by this much towards its mean eigenvalue", non_negative_number),
}
_TEMPERATURES = {"teacher_temperature": "teacher_temperature", "student_temperature": "student_temperature"}
_DR_ARGUMENTS = {**_TEMPERATURES, "include_positive": "include_positive"}
_QUEUE = "compares each caption with the other anchors in its queue"
METHODS: dict[str, MethodSpec] = {spec.code: spec for spec in (
    MethodSpec("fd", "feature distillation (FD)", "feature distillation: MSE(student(caption), anchor)",
               feature_distillation, ("s", "a"), {"normalize": "normalize_features"}, mse_term=True, paper=True,
               hyperparameters=_MSE_OPTIONS),
    MethodSpec("ed", "English-control distillation (ED)",
               "English-control distillation: FD + MSE(student(English caption), anchor)",
               english_control, ("s", "s_en", "a"), {"normalize": "normalize_features"},
               mse_term=True, paper=True, hyperparameters=_MSE_OPTIONS),
    MethodSpec("sd", "soft-logit distillation (SD)", "soft-logit distillation: KL over the batch's anchor similarities",
               soft_logit, ("s", "t", "a"), _TEMPERATURES,
               negatives="matches the softmax over the batch's anchor similarities", paper=True),
    MethodSpec("mcl", "multilingual contrastive learning (MCL)",
               "multilingual contrastive learning: symmetric InfoNCE against the anchors",
               contrastive, ("s", "a"), {"temperature": "contrastive_temperature"},
               negatives="contrasts each caption with the other rows' anchors", paper=True),
    MethodSpec("dr", "distributional replication (DR)",
               "distributional replication: KL over a FIFO queue of teacher anchors",
               distributional_replication, ("s", "t", "a", "keys"), _DR_ARGUMENTS, negatives=_QUEUE, paper=True),
    # candidates for the paper's Open Question 1 (one objective for retrieval and VQA); not in the paper
    MethodSpec("drg", "DR with English-control geometry (DRG)",
               "DR + cosine distance of the caption and of the student's English to the anchor",
               dr_geometry, ("s", "s_en", "t", "a", "keys"), _DR_ARGUMENTS, citation=None,
               hyperparameters={"geometry_weight": Hyperparameter(
                   DEFAULT_GEOMETRY_WEIGHT, "lambda: the weight of the cosine-distance geometry term beside DR")},
               negatives=_QUEUE, includes=("dr",)),
    MethodSpec("drb", "bidirectional distributional replication (DRB)",
               "DR + the reverse KL: each anchor's distribution over the batch's texts",
               dr_bidirectional, ("s", "t", "a", "keys"), _DR_ARGUMENTS, citation=None, negatives=_QUEUE,
               includes=("dr",),
               hyperparameters={"reverse_weight": Hyperparameter(
                   1.0, "the weight of the reverse (anchor -> the batch's texts) KL beside DR")}),
)}
#: the paper's five methods in its order (``fd, ed, sd, mcl, dr``): the study reads other methods against them
PAPER_METHODS: tuple[str, ...] = tuple(code for code, spec in METHODS.items() if spec.paper)
#: the paper's combinations of them (its configs ``clip-l14_xlmr-base_dr+fd.yaml``, ``..._dr+ed+fd.yaml``)
PAPER_COMBINATIONS: tuple[str, ...] = ("dr+fd", "dr+ed+fd")
_BUILT_IN = frozenset(METHODS)


def validate_method(spec: MethodSpec) -> None:
    """Check a :class:`MethodSpec` the way the built-ins are checked: code format, display name, inputs known,
    the loss takes the keywords of ``arguments`` and ``hyperparameters``, hyperparameter defaults pass their
    checks, and one call of ``loss`` on small random embeddings (its own keyword defaults, the hyperparameters'
    defaults) returns a dict with a finite scalar ``"loss"`` that carries the student's gradient and scalar
    parts. Raises ``TypeError``/``ValueError`` naming what is wrong. (That the ``arguments`` name
    ``DistillationArguments`` fields is checked by ``DistillationArguments`` when a run selects the method.)"""
    import inspect

    import torch

    if not isinstance(spec, MethodSpec):
        raise TypeError(f"a method is a mvld_hf.losses.MethodSpec, got {type(spec).__name__}")
    where = f"method {spec.code!r}"
    if not isinstance(spec.code, str) or not _CODE.match(spec.code):
        raise ValueError(f"method code {spec.code!r} must be lower-case letters and '_' (e.g. 'my_kd'): it is "
                         "written in DistillationArguments.method such as 'dr+my_kd:0.5'")
    if not isinstance(spec.display_name, str) or not spec.display_name.strip():
        raise ValueError(f"{where}: display_name must be a non-empty string (model cards print it)")
    if not callable(spec.loss):
        raise TypeError(f"{where}: loss must be callable, got {type(spec.loss).__name__}")
    inputs = tuple(spec.inputs) if isinstance(spec.inputs, (tuple, list)) else ()
    unknown = [name for name in inputs if name not in INPUTS]
    if not inputs or unknown or len(set(inputs)) != len(inputs):
        raise ValueError(f"{where}: inputs must be distinct names among {INPUTS}, got {spec.inputs!r}")
    try:
        parameters = inspect.signature(spec.loss).parameters
    except (TypeError, ValueError):  # a builtin without a signature: the call below checks it
        parameters = None
    if parameters is not None and not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        missing = sorted(k for k in [*spec.arguments, *spec.hyperparameters] if k not in parameters)
        if missing:
            raise ValueError(f"{where}: loss takes no keyword {missing} (named in arguments/hyperparameters)")
    clash = sorted(set(spec.arguments) & set(spec.hyperparameters))
    if clash:
        raise ValueError(f"{where}: {clash} is both an argument and a hyperparameter")
    if not all(isinstance(hp, Hyperparameter) for hp in spec.hyperparameters.values()):
        raise TypeError(f"{where}: hyperparameters map loss keywords to mvld_hf.losses.Hyperparameter")
    kwargs = spec.method_kwargs()  # the defaults pass their checks
    if spec.citation is not None and not (isinstance(spec.citation, str) and spec.citation.strip().startswith("@")):
        raise ValueError(f"{where}: citation must be a BibTeX entry ('@article{{...}}') or None")
    if spec.negatives is not None and not (isinstance(spec.negatives, str) and spec.negatives.strip()):
        raise ValueError(f"{where}: negatives must say what the method compares among other rows, or be None")
    unknown = [code for code in spec.includes if code not in METHODS or code == spec.code]
    if unknown:
        raise ValueError(f"{where}: includes names {unknown}, not another registered method")
    generator = torch.Generator().manual_seed(0)
    embeddings = {name: torch.randn(4, 8, generator=generator) for name in INPUTS}
    embeddings["s"].requires_grad_(True)
    try:
        out = spec.loss(*(embeddings[name] for name in inputs), **kwargs)
    except Exception as err:
        raise ValueError(f"{where}: loss({', '.join(inputs)}) failed on [4, 8] random embeddings: "
                         f"{type(err).__name__}: {err}") from err
    if not isinstance(out, dict) or "loss" not in out:
        raise ValueError(f"{where}: loss must return a dict with a 'loss' entry (and named parts), got "
                         f"{type(out).__name__}" + (f" with keys {sorted(out)}" if isinstance(out, dict) else ""))
    bad = sorted(k for k, v in out.items() if not (isinstance(v, torch.Tensor) and v.numel() == 1))
    if bad:
        raise ValueError(f"{where}: every entry the loss returns is logged and must be a scalar tensor; {bad} is not")
    if not torch.isfinite(out["loss"]).all():
        raise ValueError(f"{where}: the loss is {float(out['loss'].detach())} on random embeddings")
    if not out["loss"].requires_grad:
        raise ValueError(f"{where}: the loss carries no gradient to the student's embeddings 's' (detached?)")


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add a method of one's own to :data:`METHODS`, after :func:`validate_method`; it is then selectable as
    ``DistillationArguments(method=spec.code)`` (alone or combined, ``"dr+my_kd:0.5"``), trains through
    :class:`~mvld_hf.DistillationTrainer` with its parts logged, and is named (with its citation) by the model
    card. Registering an equal spec again is a no-op; a different spec under a taken code needs
    ``replace=True`` (never for the built-in methods). For ``mvld-distill`` and study cells, register it in a
    module named in ``$MVLD_HF_METHODS`` (:func:`load_method_modules`).

    >>> import torch
    >>> def cosine_kd(s, a):
    ...     return {"loss": (1 - torch.nn.functional.cosine_similarity(s, a)).mean()}
    >>> spec = register_method(MethodSpec("cos_demo", "cosine distillation (COS_DEMO)", "1 - cos(student, anchor)",
    ...                                   cosine_kd, ("s", "a"), citation=None))
    >>> parse_method("dr+cos_demo:0.5")
    {'dr': 1.0, 'cos_demo': 0.5}
    >>> unregister_method("cos_demo")
    """
    validate_method(spec)
    current = METHODS.get(spec.code)
    if current is not None and current != spec:
        if spec.code in _BUILT_IN:
            raise ValueError(f"{spec.code!r} is a built-in method of mvld_hf; give yours another code")
        if not replace:
            raise ValueError(f"a different method {spec.code!r} is already registered; pass replace=True to "
                             "replace it or choose another code")
    METHODS[spec.code] = spec
    return spec


def unregister_method(code: str) -> None:
    """Remove a method added by :func:`register_method` (the built-ins stay)."""
    if code in _BUILT_IN:
        raise ValueError(f"{code!r} is a built-in method of mvld_hf and cannot be removed")
    if code not in METHODS:
        raise KeyError(f"no registered method {code!r}")
    del METHODS[code]


def load_method_modules(modules: str | Sequence[str] | None = None) -> list[str]:
    """Import the modules that register methods: ``modules`` (a list, or one comma-separated string) or, by
    default, ``$MVLD_HF_METHODS``. Each is a module name (``my_pkg.methods``, importable on ``sys.path``) or the
    path of a ``.py`` file; a file is loaded once per process. Returns what was imported.

    ``mvld-distill`` calls this before parsing its arguments, and a study passes its spec's ``plugins`` to every
    cell through ``$MVLD_HF_METHODS``: ``MVLD_HF_METHODS=my_methods.py mvld-distill --method my_kd``."""
    if modules is None:
        modules = os.environ.get(METHODS_ENV, "")
    names = [m.strip() for m in modules.split(",")] if isinstance(modules, str) else [str(m).strip() for m in modules]
    loaded = []
    for name in filter(None, names):
        if name.endswith(".py") or os.sep in name:
            path = os.path.abspath(os.path.expanduser(name))
            if not os.path.isfile(path):
                raise FileNotFoundError(f"method module {name!r} (from {METHODS_ENV} or a study's plugins) is not "
                                        "a file")
            module_name = "mvld_hf_methods_" + re.sub(r"\W", "_", path)
            if module_name not in sys.modules:
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[module_name]
                    raise
        else:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as err:
                raise ModuleNotFoundError(f"method module {name!r} (from {METHODS_ENV} or a study's plugins) "
                                          f"cannot be imported: {err}; put it on PYTHONPATH or name its .py "
                                          "file") from err
        loaded.append(name)
    return loaded


def citations(method: str | None) -> str:
    """The BibTeX the model card prints for ``method`` (``"dr+fd"``): every selected method's citation, then the
    paper's (mvld_hf implements its training recipe), each once, separated by blank lines."""
    entries = []
    try:
        codes = parse_method(method) if method else {}
    except ValueError:
        codes = {}
    for code in codes:
        if METHODS[code].citation:
            entries.append(METHODS[code].citation.strip())
    entries.append(PAPER_CITATION)
    return "\n\n".join(dict.fromkeys(entries))


_TERM = re.compile(r"^\s*([A-Za-z_]+)\s*(?::\s*([^\s:]+)\s*)?$")
_ENV_LOADED = []


def parse_method(method: str) -> dict[str, float]:
    """Parse ``"dr"``, ``"dr+fd"`` or ``"dr:1.0,ed:0.5,fd:0.5"`` into ``{method: weight}`` (insertion ordered).

    Terms are separated by ``+`` or ``,``; a term without ``:weight`` has weight 1. A name not in
    :data:`METHODS` first imports ``$MVLD_HF_METHODS`` (once per process), then is refused.

    >>> parse_method("dr:1.0,ed:0.5+fd")
    {'dr': 1.0, 'ed': 0.5, 'fd': 1.0}
    """
    if not isinstance(method, str) or not method.strip():
        raise ValueError(f"method must be a non-empty string such as 'dr' or 'dr:1.0,fd:0.5', got {method!r}")
    weights: dict[str, float] = {}
    for term in re.split(r"[+,]", method):
        match = _TERM.match(term)
        if not match:
            raise ValueError(f"malformed term {term!r} in method {method!r}: expected NAME or NAME:WEIGHT, "
                             f"e.g. 'dr:1.0,ed:0.5,fd:0.5'")
        name, weight_text = match.group(1).lower(), match.group(2)
        if name not in METHODS and not _ENV_LOADED and os.environ.get(METHODS_ENV):
            _ENV_LOADED.append(load_method_modules())
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r} in {method!r}; choose from {', '.join(METHODS)} (a method "
                             f"of your own: mvld_hf.losses.register_method, or a module named in {METHODS_ENV})")
        if name in weights:
            raise ValueError(f"method {name!r} appears twice in {method!r}")
        try:
            weight = 1.0 if weight_text is None else float(weight_text)
        except ValueError:
            raise ValueError(f"weight {weight_text!r} of {name!r} in {method!r} is not a number") from None
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"weight of {name!r} in {method!r} must be a positive finite number, got {weight_text}")
        weights[name] = weight
    return weights


def double_counted(method: str, weights: dict[str, float]) -> str | None:
    """One line saying exactly what a sum that holds a method's loss in several terms adds up to (``dr+drg``:
    DRG's loss holds DR's, so DR counts twice; the study's ``dr:0.5,drb:0.5`` is DR plus half of DRB's reverse
    term), or None. :class:`~mvld_hf.DistillationArguments` logs it as a warning.

    >>> double_counted("dr+drg", {"dr": 1.0, "drg": 1.0})[:71]
    "method 'dr+drg' holds DR in 2 terms: 2 x DR in all (dr 1 + drg 1), plus"
    """
    lines = []
    for base in dict.fromkeys(b for code in weights for b in (code, *METHODS[code].includes)):
        holders = [code for code in weights if code == base or base in METHODS[code].includes]
        if len(holders) < 2:
            continue
        total = sum(weights[code] for code in holders)
        parts = " + ".join(f"{code} {weights[code]:g}" for code in holders)
        prefix = f"{base.upper()} + "
        extra = "; ".join(f"{code}'s other terms ({METHODS[code].description.removeprefix(prefix)}) at "
                          f"{weights[code]:g}" for code in holders if code != base)
        lines.append(f"{base.upper()} in {len(holders)} terms: {total:g} x {base.upper()} in all ({parts}), plus "
                     f"{extra}")
    if not lines:
        return None
    return f"method {method!r} holds {'; '.join(lines)}. If that is not meant, keep one of them"
