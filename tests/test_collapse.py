"""FD on a pretrained-like student must not collapse (issue 11).

A real pretrained backbone (multilingual-e5-small) pools captions into large-norm, anisotropic vectors that
already encode meaning across languages, in a space unrelated to the teacher's. From a random projection, FD's
MSE pulls every output towards the targets' mean first and Adam's normalised steps carry the backbone along:
the student ends as a near-constant encoder (benchmarks/RESULTS_real_models.md). The library's default
(``projection_init="auto"``: a least-squares warm start of the projection before FD/ED, for a pretrained
backbone) must prevent it.

The tiny stand-in: a 2-layer student first trained (MCL) to map translations to shared vectors of its own
space, then made anisotropic (a large constant added to its last LayerNorm's bias: pooled norm ~6, mean
pairwise cosine ~0.94, like e5's 4.7 / 0.91), with a fresh random projection; the teacher's targets are
unit-norm vectors with a common component (spread ~0.5, like MiniLM's 0.61 on our captions).
"""

import copy

import datasets
import pytest
import torch
import torch.nn.functional as F

from mvld_hf import DistillationArguments, DistillationTrainer
from mvld_hf.evaluation.translation import TranslationEvaluator
from mvld_hf.testing import tiny_student

DIM = 16


def _args(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, report_to=[],
                    save_strategy="no", disable_tqdm=True, use_cpu=True, seed=0)
    return DistillationArguments(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def setting(toy_rows, tokenizer, tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    english = sorted({r["english"] for r in toy_rows})
    rows = [{k: r[k] for k in ("caption", "english", "language")} for r in toy_rows]
    mean = F.normalize(torch.randn(DIM, generator=g), dim=0)
    targets = {e: F.normalize(mean + torch.randn(DIM, generator=g) / DIM**0.5, dim=0) for e in english}
    own = {e: torch.randn(DIM, generator=g) for e in english}
    with_column = lambda vectors: datasets.Dataset.from_list(  # noqa: E731
        [dict(r, teacher_text_embeds=vectors[r["english"]].tolist()) for r in rows])
    student = tiny_student(tokenizer, projection_dim=DIM, seed=0)
    student.config.backbone_name_or_path = "pretrained-like stand-in"  # as from_backbone records a checkpoint
    pretrain = _args(tmp_path_factory.mktemp("pre"), method="mcl", per_device_train_batch_size=32,
                     learning_rate=5e-3, num_train_epochs=40, projection_init="none")
    DistillationTrainer(model=student, args=pretrain, train_dataset=with_column(own),
                        processing_class=tokenizer).train()
    with torch.no_grad():
        bias = student.backbone.encoder.layer[-1].output.LayerNorm.bias
        bias.add_(F.normalize(torch.randn(bias.shape, generator=g), dim=0) * 1.5 * bias.numel() ** 0.5)
        torch.nn.init.normal_(student.projection.weight, std=0.02)
        student.projection.bias.zero_()
    evaluator = TranslationEvaluator([r for r in rows if r["language"] != "en"])
    evaluator.encode_teacher(lambda texts: torch.stack([targets[t] for t in texts]))
    return student, with_column(targets), evaluator


def _distil_fd(setting, tokenizer, tmp_path, projection_init):
    pretrained, data, evaluator = setting
    student = copy.deepcopy(pretrained)
    with torch.no_grad():
        pooled = student.eval()(**tokenizer(list(data["caption"]), padding=True, return_tensors="pt")).pooled_output
    unit = F.normalize(pooled, dim=-1)
    assert pooled.norm(dim=-1).mean() > 4 and (unit @ unit.T).mean() > 0.85  # large-norm, anisotropic
    args = _args(tmp_path, method="fd", learning_rate=1e-3, num_train_epochs=10, projection_init=projection_init)
    DistillationTrainer(model=student, args=args, train_dataset=data, processing_class=tokenizer).train()
    out = evaluator(lambda texts: student.encode(texts, tokenizer))
    return out


def test_fd_from_random_projection_collapses(setting, tokenizer, tmp_path):
    """The failure the default guards against: without the warm start the student becomes near-constant."""
    m = _distil_fd(setting, tokenizer, tmp_path, "none")
    assert m["translation_spread_mean"] > 0.88 > m["translation_teacher_spread_mean"] + 0.3
    assert m["translation_s2t_acc_mean"] < 0.25


def test_fd_default_does_not_collapse(setting, tokenizer, tmp_path):
    m = _distil_fd(setting, tokenizer, tmp_path, DistillationArguments.projection_init)  # the default
    assert m["translation_spread_mean"] < 0.82
    assert m["translation_s2t_acc_mean"] > 0.4 and m["translation_t2s_acc_mean"] > 0.6
    assert m["translation_cosine_mean"] > 0.83
