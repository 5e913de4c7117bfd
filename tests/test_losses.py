import math

import pytest
import torch

from smartassign.builder import build_model
from smartassign.config import LossConfig, ModelConfig, Variant
from smartassign.losses import (
    QuasiSparsityLoss,
    SmartAssignLoss,
    charbonnier_loss,
    gradient_loss,
    knowledge_contrast_loss,
    recognition_loss,
)
from smartassign.model import SmartAssignOutput

from .test_model import TINY


def test_charbonnier_matches_its_formula():
    restored = torch.zeros(2, 3, 4, 4)
    target = torch.full((2, 3, 4, 4), 0.3)
    expected = math.sqrt(0.3**2 + 1e-3**2)
    torch.testing.assert_close(charbonnier_loss(restored, target, 1e-3), torch.full((2,), expected))
    assert charbonnier_loss(target, target, 1e-3)[0] == pytest.approx(1e-3)


def test_charbonnier_image_form_is_the_norm_and_pixel_form_the_mean():
    target = torch.zeros(1, 1, 2, 2)
    restored = torch.tensor([[[[0.4, 0.0], [0.0, 0.0]]]])
    image = charbonnier_loss(restored, target, 1e-3, "image")
    pixel = charbonnier_loss(restored, target, 1e-3, "pixel")
    assert float(image) == pytest.approx(math.sqrt(0.4**2 / 4 + 1e-6))
    assert float(pixel) == pytest.approx((math.sqrt(0.4**2 + 1e-6) + 3e-3) / 4)


def test_gradient_loss_sees_edges_not_offsets():
    image = torch.rand(1, 3, 8, 8)
    assert gradient_loss(image + 0.2, image)[0] == pytest.approx(0.0, abs=1e-12)
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 3, 8, 8) / 8
    flat = torch.zeros(1, 3, 8, 8)
    assert gradient_loss(ramp, flat)[0] == pytest.approx((1 / 8) ** 2)


def test_quasi_sparsity_penalises_streaks_in_both_layers():
    sparsity = QuasiSparsityLoss()
    background = torch.full((1, 3, 16, 16), 0.5)
    streaks = background.clone()
    streaks[..., ::4] += 0.4
    assert sparsity(background, background)[0] == 0
    # restoring nothing leaves the streaks in R; removing them leaves them in I - R
    assert sparsity(streaks, streaks)[0] > 0
    assert sparsity(background, streaks)[0] == pytest.approx(sparsity(streaks, streaks)[0])


def test_recognition_loss_is_squared_error_to_one_hot():
    logits = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    task = torch.tensor([0, 1])
    torch.testing.assert_close(recognition_loss(logits, task), torch.tensor([0.0, 0.5]))


def _matrices(spread: float) -> dict[str, torch.Tensor]:
    """Three kinds, each a cluster of rows around its own centre, ``spread`` apart."""
    torch.manual_seed(0)
    centres = torch.eye(3, 8)
    return {
        kind: (centres[i] + spread * torch.randn(2, 5, 8))
        for i, kind in enumerate(("rk", "ck", "sk"))
    }


def test_contrast_falls_when_same_kind_atoms_get_closer():
    loose = knowledge_contrast_loss(_matrices(1.0), temperature=0.5)
    tight = knowledge_contrast_loss(_matrices(0.1), temperature=0.5)
    assert loose.shape == (2,)
    assert (tight < loose).all()


def test_contrast_gradient_pulls_same_kind_rows_together():
    matrices = _matrices(0.8)
    for value in matrices.values():
        value.requires_grad_(True)
    loss = knowledge_contrast_loss(matrices, temperature=0.5).mean()
    loss.backward()
    with torch.no_grad():
        stepped = {k: v - 0.5 * v.grad for k, v in matrices.items()}

    def within(ms):
        normed = torch.nn.functional.normalize(ms["rk"], dim=-1)
        return (normed @ normed.transpose(1, 2)).mean()

    assert within(stepped) > within(matrices)
    assert knowledge_contrast_loss(stepped, 0.5).mean() < loss


def test_contrast_needs_two_kinds():
    with pytest.raises(ValueError, match="at least two kinds"):
        knowledge_contrast_loss({"rk": torch.rand(1, 2, 3)}, 0.5)


@pytest.mark.parametrize("routed", [False, True], ids=["both-decoders", "task-routed"])
def test_each_sample_trains_only_its_own_decoder(routed):
    """Also when the forward pass runs each decoder on its own task's samples only: the
    decoder without samples still gets a (zero) gradient, as DDP needs."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY))
    criterion = SmartAssignLoss(LossConfig())
    degraded = torch.rand(2, 3, 16, 16)
    target = torch.rand(2, 3, 16, 16)
    for task, trained, untouched in (([0, 0], "derain", "desnow"), ([1, 1], "desnow", "derain")):
        model.zero_grad()
        labels = torch.tensor(task)
        out = model(degraded, labels) if routed else model(degraded)
        terms = criterion(out, degraded, target, labels)
        terms.total.backward()
        grads = {
            head: sum(p.grad.abs().sum() for p in model.decoders[head].parameters())
            for head in ("derain", "desnow")
        }
        assert grads[trained] > 0
        assert grads[untouched] == 0


def test_mixed_batch_picks_per_sample_outputs():
    derain, desnow = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    out = SmartAssignOutput(derain=derain, desnow=desnow, logits=None)
    chosen = out.for_tasks(torch.tensor([0, 1]))
    assert chosen[0].max() == 0 and chosen[1].min() == 1


def test_total_is_the_weighted_sum_and_every_term_is_reported():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY))
    cfg = LossConfig(lambda1=0.3, lambda2=0.2, grad_weight=2.0, recog_weight=0.5)
    degraded, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    terms = SmartAssignLoss(cfg)(model(degraded), degraded, target, torch.tensor([0, 1]))
    values = terms.as_floats()
    assert set(values) == {
        "total",
        "charbonnier",
        "gradient",
        "sparsity",
        "recognition",
        "contrast",
    }
    expected = (
        values["charbonnier"]
        + 2.0 * values["gradient"]
        + 0.5 * values["recognition"]
        + 0.3 * values["sparsity"]
        + 0.2 * values["contrast"]
    )
    assert values["total"] == pytest.approx(expected, rel=1e-6)


def test_variants_without_heads_leave_their_terms_out():
    degraded, target = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    for variant, absent in ((Variant.V5, "recognition"), (Variant.V1, "contrast")):
        model = build_model(ModelConfig(**TINY, variant=variant))
        terms = SmartAssignLoss(LossConfig())(model(degraded), degraded, target, torch.tensor([0]))
        assert absent not in terms.terms


def test_single_task_model_refuses_the_other_task():
    model = build_model(ModelConfig(**TINY, variant=Variant.V4, single_task="rain"))
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="single-task model"):
        SmartAssignLoss(LossConfig())(model(x), x, x, torch.tensor([1]))
