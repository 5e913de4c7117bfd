"""Training objective of paper Sec. 3.3 (Eq. 13-19).

Each sample of a mixed rain/snow batch is restored by its own task's decoder only: the
recovery losses (Eq. 13-15) are computed on ``R = D_dr(I)`` for rain samples and
``R = D_ds(I)`` for snow samples, so a decoder never receives gradients from the other
task's samples. :class:`SmartAssignLoss` returns the weighted total (Eq. 19) and every
term separately for logging.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from smartassign.config import CharbonnierForm, LossConfig

if TYPE_CHECKING:
    from smartassign.model import SmartAssignOutput


def charbonnier_loss(
    restored: torch.Tensor, target: torch.Tensor, eps: float, form: CharbonnierForm = "image"
) -> torch.Tensor:
    """Eq. 13, per sample.

    ``image`` (Eq. 13 as printed): ``sqrt(||R - G||^2 + eps^2)`` over the whole image, with
    the mean square in place of the sum so the value does not depend on the crop size. Its
    gradient points along ``R - G`` like the MSE's, so it optimises PSNR directly.
    ``pixel`` (the per-pixel form common in deraining code): the mean over pixels of
    ``sqrt((R - G)^2 + eps^2)``, an L1-like loss that leaves sparse errors such as faint
    streaks for late in training.
    """
    squared = (restored - target).pow(2).flatten(1)
    if form == "pixel":
        return torch.sqrt(squared + eps * eps).mean(dim=1)
    return torch.sqrt(squared.mean(dim=1) + eps * eps)


def _gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return image[..., :, 1:] - image[..., :, :-1], image[..., 1:, :] - image[..., :-1, :]


def gradient_loss(restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 14, per sample: MSE between horizontal and vertical differences of R and G.

    Means replace the paper's sums, as in :func:`charbonnier_loss`; the sums' balance of
    Eq. 13 and 14 is a ``grad_weight`` of ``sqrt(N)`` for ``N`` values per crop
    (docs/model.md, "Gradient weight").
    """
    (rx, ry), (gx, gy) = _gradients(restored), _gradients(target)
    return (rx - gx).pow(2).flatten(1).mean(dim=1) + (ry - gy).pow(2).flatten(1).mean(dim=1)


def _derivative_bank() -> torch.Tensor:
    """Fixed 3x3 derivative filters of the quasi-sparsity prior (Eq. 15).

    First differences in four directions and second differences horizontally,
    vertically and in both diagonals.
    """
    filters = [
        [[0, 0, 0], [0, -1, 1], [0, 0, 0]],
        [[0, 0, 0], [0, -1, 0], [0, 1, 0]],
        [[0, 0, 0], [0, -1, 0], [0, 0, 1]],
        [[0, 0, 0], [0, -1, 0], [1, 0, 0]],
        [[0, 0, 0], [1, -2, 1], [0, 0, 0]],
        [[0, 1, 0], [0, -2, 0], [0, 1, 0]],
        [[1, 0, 0], [0, -2, 0], [0, 0, 1]],
        [[0, 0, 1], [0, -2, 0], [1, 0, 0]],
    ]
    return torch.tensor(filters, dtype=torch.float32)[:, None]


class QuasiSparsityLoss(nn.Module):
    """Eq. 15, per sample: ``mean |w_n * R| + mean |w_n * (I - R)|`` over the filter bank.

    The restored image and the removed layer ``I - R`` (rain streaks or snow) are both
    encouraged to have sparse derivatives. Means replace the paper's sums so the weight
    ``lambda1`` does not depend on the crop size.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bank", _derivative_bank(), persistent=False)

    def _response(self, image: torch.Tensor) -> torch.Tensor:
        batch, channels = image.shape[:2]
        flat = image.reshape(batch * channels, 1, *image.shape[2:])
        response = F.conv2d(flat, self.bank.to(image.dtype))
        return response.abs().reshape(batch, -1).mean(dim=1)

    def forward(self, restored: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        return self._response(restored) + self._response(degraded - restored)


def recognition_loss(logits: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
    """Eq. 16, per sample: ``||R_re - L||^2`` against the one-hot label (rain, snow)."""
    one_hot = F.one_hot(task, num_classes=2).to(logits.dtype)
    return (logits - one_hot).pow(2).sum(dim=1)


def knowledge_contrast_loss(matrices: dict[str, torch.Tensor], temperature: float) -> torch.Tensor:
    """Knowledge contrast (Eq. 17-18), implemented as the paper intends.

    As printed, Eq. 17 divides raw dot products ``M_k M_k^T`` by sums of cross-kind dot
    products; these can be negative and unbounded, and minimising the ratio pushes
    same-kind atoms apart, the opposite of the stated goal ("making the same kind of
    knowledge atoms closer and different kinds more discriminative"). Here similarities
    are positive, ``S_kl(i, j) = exp(cos(M_k[i], M_l[j]) / tau)``, and for each kind ``k``
    ``Z_k = S_kk / (S_kk + sum_{l != k} S_kl)`` element-wise, as in Eq. 17. The loss is
    ``-mean(log Z)`` over the kinds and the ``C x C`` entries (Eq. 18) and the batch, so
    it falls as same-kind rows get closer and different kinds move apart.

    ``matrices`` maps each kind (``rk``, ``ck``, ``sk``; at least two) to ``B x C x F``.
    Returns one value per sample.
    """
    if len(matrices) < 2:
        raise ValueError("the knowledge contrast needs at least two kinds of knowledge")
    normed = {kind: F.normalize(m.float(), dim=-1) for kind, m in matrices.items()}
    logits = {
        (mine, other): normed[mine] @ normed[other].transpose(1, 2) / temperature
        for mine, other in itertools.product(normed, repeat=2)
    }
    terms = []
    for kind in normed:
        stacked = torch.stack([logits[(kind, other)] for other in normed], dim=0)
        log_z = logits[(kind, kind)] - torch.logsumexp(stacked, dim=0)
        terms.append(-log_z.flatten(1).mean(dim=1))
    return torch.stack(terms).mean(dim=0)


@dataclass
class LossTerms:
    """The weighted total of Eq. 19 and every term (batch means, unweighted)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]

    def as_floats(self) -> dict[str, float]:
        """Detached values for logging: ``total`` plus each term."""
        values = {"total": float(self.total.detach())}
        values.update({name: float(value.detach()) for name, value in self.terms.items()})
        return values


class SmartAssignLoss(nn.Module):
    """Eq. 19: ``L = L_char + L_grad + L_recog + lambda1 L_sparsity + lambda2 L_contra``.

    ``grad_weight`` and ``recog_weight`` (1 in the paper) are configurable. Terms whose
    part is absent in the model variant (no ``D_re``, no DRM) are left out.
    """

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sparsity = QuasiSparsityLoss()

    def forward(
        self,
        output: SmartAssignOutput,
        degraded: torch.Tensor,
        target: torch.Tensor,
        task: torch.Tensor,
    ) -> LossTerms:
        cfg = self.cfg
        restored = output.for_tasks(task).float()
        terms = {
            "charbonnier": charbonnier_loss(
                restored, target, cfg.charbonnier_eps, cfg.charbonnier
            ).mean(),
            "gradient": gradient_loss(restored, target).mean(),
            "sparsity": self.sparsity(restored, degraded).mean(),
        }
        total = terms["charbonnier"] + cfg.grad_weight * terms["gradient"]
        total = total + cfg.lambda1 * terms["sparsity"]
        if output.logits is not None:
            terms["recognition"] = recognition_loss(output.logits.float(), task).mean()
            total = total + cfg.recog_weight * terms["recognition"]
        knowledge = output.knowledge
        if knowledge is not None and knowledge.matrices is not None:
            terms["contrast"] = knowledge_contrast_loss(
                knowledge.matrices, cfg.contrast_temperature
            ).mean()
            total = total + cfg.lambda2 * terms["contrast"]
        return LossTerms(total=total, terms=terms)
