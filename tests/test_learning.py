"""The network and Eq. 19 learn: a few hundred Adam steps on one rain and one snow pair."""

import numpy as np
import pytest
import torch

from smartassign.builder import build_model
from smartassign.config import Config
from smartassign.data.images import read_rgb
from smartassign.data.synthetic import add_rain, add_snow, builtin_photos, sample_rng
from smartassign.losses import SmartAssignLoss
from smartassign.metrics import psnr_batch


def _pair(task: str, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = Config().data.synthetic
    photo = next(p for p in builtin_photos() if p.name == "chelsea")
    clean = read_rgb(photo.path).pixels[100 : 100 + size, 150 : 150 + size]
    rng = sample_rng(0, task, photo.name, 0)
    degraded = add_rain(clean, rng, cfg.rain) if task == "rain" else add_snow(clean, rng, cfg.snow)

    def tensor(pixels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div(255)

    return tensor(degraded), tensor(clean)


@pytest.fixture
def two_threads():
    """Two torch threads for this test, the session's count again after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_each_decoder_gains_3_db_on_its_own_pair(two_threads):
    torch.manual_seed(0)
    cfg = Config()
    (rain_in, rain_gt), (snow_in, snow_gt) = _pair("rain"), _pair("snow")
    degraded = torch.stack([rain_in, snow_in])
    target = torch.stack([rain_gt, snow_gt])
    task = torch.tensor([0, 1])
    model = build_model(cfg)
    criterion = SmartAssignLoss(cfg.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)

    def scores() -> tuple[float, float]:
        with torch.no_grad():
            out = model.eval()(degraded)
        model.train()
        derain = psnr_batch(out.derain[:1].clamp(0, 1), target[:1], y_channel=True)
        desnow = psnr_batch(out.desnow[1:].clamp(0, 1), target[1:], y_channel=True)
        return float(derain), float(desnow)

    start = scores()
    for _ in range(300):
        optimizer.zero_grad()
        criterion(model(degraded), degraded, target, task).total.backward()
        optimizer.step()
    end = scores()
    assert end[0] - start[0] >= 3.0, (start, end)
    assert end[1] - start[1] >= 3.0, (start, end)
