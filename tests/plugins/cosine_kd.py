"""A distillation method of one's own, defined outside mvld_hf (no package file edited): cosine distillation with
a margin. Importing this module registers it; ``MVLD_HF_METHODS=tests/plugins/cosine_kd.py mvld-distill --method
cos_kd`` and a study spec's ``plugins: [tests/plugins/cosine_kd.py]`` make it known to a run.
tests/examples/test_user_method.py trains with it through DistillationTrainer, mvld-distill and a study grid."""

import torch
import torch.nn.functional as F

from mvld_hf.losses import Hyperparameter, MethodSpec, register_method

CITATION = """@misc{user2026cosine,
  title  = {Cosine distillation with a margin: a method of one's own},
  author = {User, Ada},
  year   = {2026}
}"""


def cosine_kd(s: torch.Tensor, a: torch.Tensor, margin: float = 0.0) -> dict[str, torch.Tensor]:
    """``mean(relu(1 - margin - cos(s_i, a_i)))``; logs the mean cosine as a part."""
    cosine = F.cosine_similarity(s, a.detach(), dim=-1)
    return {"loss": torch.relu(1 - margin - cosine).mean(), "cosine": cosine.detach().mean()}


def _margin(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


SPEC = register_method(MethodSpec(
    "cos_kd", "cosine distillation (COS_KD)", "1 - cos(student(caption), anchor), hinged at a margin",
    cosine_kd, ("s", "a"), citation=CITATION,
    hyperparameters={"margin": Hyperparameter(0.0, "cosine distance below which a row adds no loss", _margin)}))
