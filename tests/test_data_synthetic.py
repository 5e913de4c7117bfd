"""The synthetic default: deterministic, split by photo, and realistic in input PSNR-Y."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smartassign.config import Config, config_from_dict
from smartassign.data.common import DataError
from smartassign.data.dead_leaves import TEXTURE_FIELDS, dead_leaves_image, texture_fields
from smartassign.data.images import read_rgb
from smartassign.data.synthetic import (
    BUILTIN_TRAIN_PHOTOS,
    add_rain,
    add_snow,
    builtin_photos,
    generate,
    random_crop,
    sample_rng,
    split_photos,
)
from smartassign.metrics import psnr

BANDS = {"rain": (10.0, 32.0), "snow": (15.0, 30.0)}


def _small(**synthetic: object):
    tree = {
        "size": 64,
        "crops_per_photo": {"train": 2, "val": 1, "test": 1},
        "train_photos": "none",
        "dead_leaves": 0,
        **synthetic,
    }
    return config_from_dict({"data": {"crop_size": 32, "synthetic": tree}}).data


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.png"))
    }


def test_builtin_photos_ship_with_the_installed_packages():
    photos = builtin_photos()
    assert len(photos) == 7
    for photo in photos:
        pixels = read_rgb(photo.path).pixels
        assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 256


def test_training_only_photos_ship_with_the_installed_packages():
    photos = builtin_photos(BUILTIN_TRAIN_PHOTOS)
    assert len(photos) == 12
    assert not {p.name for p in photos} & {p.name for p in builtin_photos()}
    for photo in photos:
        pixels = read_rgb(photo.path).pixels
        assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 256


def _photos_by_split(pairs) -> dict[str, set[str]]:
    photos_of: dict[str, set[str]] = {}
    for pair in pairs:
        photos_of.setdefault(pair.split or "", set()).add(pair.input.stem.rsplit("_", 1)[0])
    return photos_of


def test_training_only_photos_join_the_training_split_alone(tmp_path):
    """They add training scenes without changing which photos are held out."""
    plain, _ = generate(_small(), tmp_path / "plain")
    widened, issues = generate(_small(train_photos="builtin"), tmp_path / "widened")
    before, after = _photos_by_split(plain), _photos_by_split(widened)
    assert after["val"] == before["val"] and after["test"] == before["test"]
    extra = {p.name for p in builtin_photos(BUILTIN_TRAIN_PHOTOS)}
    assert after["train"] == before["train"] | extra
    assert not issues
    common = _digests(tmp_path / "plain")
    assert {k: v for k, v in _digests(tmp_path / "widened").items() if k in common} == common


def test_dead_leaves_scenes_join_the_training_split_alone(tmp_path):
    plain, _ = generate(_small(), tmp_path / "plain")
    widened, issues = generate(_small(dead_leaves=3), tmp_path / "widened")
    before, after = _photos_by_split(plain), _photos_by_split(widened)
    assert after["val"] == before["val"] and after["test"] == before["test"]
    scenes = {"dead_leaves_00", "dead_leaves_01", "dead_leaves_02"}
    assert after["train"] == before["train"] | scenes
    assert len(widened) == len(plain) + 3 * 2 * 2  # scenes x tasks x training crops
    assert not issues
    written = sorted((tmp_path / "widened" / "dead_leaves").glob("*.png"))
    assert [p.stem for p in written] == sorted(scenes)
    assert read_rgb(written[0]).pixels.shape == (128, 128, 3)  # 2 x synthetic.size
    common = _digests(tmp_path / "plain")
    assert {k: v for k, v in _digests(tmp_path / "widened").items() if k in common} == common
    generate(_small(dead_leaves=3), tmp_path / "again")
    assert _digests(tmp_path / "again") == _digests(tmp_path / "widened")


def test_dead_leaves_scenes_have_edges_of_every_orientation_and_width():
    """Occlusion edges at all angles, thin structures among them, dark and bright tones."""
    image = dead_leaves_image(512, np.random.default_rng(0))
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    grey = image.astype(np.float32).mean(axis=2)
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    strong = magnitude > 20
    assert 0.02 < strong.mean() < 0.5
    angles = np.degrees(np.arctan2(gy[strong], gx[strong])) % 180
    shares = np.histogram(angles, bins=6, range=(0, 180))[0] / strong.sum()
    assert shares.min() > 0.08, shares
    # thin structures: pixels brighter than both neighbours 2 px away, across some direction
    ridge = (grey[2:-2, 2:-2] - np.maximum(grey[:-4, 2:-2], grey[4:, 2:-2]) > 20) | (
        grey[2:-2, 2:-2] - np.maximum(grey[2:-2, :-4], grey[2:-2, 4:]) > 20
    )
    assert ridge.mean() > 0.002
    assert np.percentile(grey, 2) < 50 and np.percentile(grey, 98) > 180
    other = dead_leaves_image(512, np.random.default_rng(1))
    assert np.array_equal(image, dead_leaves_image(512, np.random.default_rng(0)))
    assert not np.array_equal(image, other)


def _flat_share(image: np.ndarray) -> float:
    """Share of pixels with no luminance gradient (inside flat shapes)."""
    gy, gx = np.gradient(image.astype(np.float32).mean(axis=2))
    return float((np.hypot(gx, gy) < 0.5).mean())


def test_dead_leaves_texture_fills_the_flat_shapes():
    """Texture 0 leaves flat colours; a texture contrast fills every shape with grain."""
    flat = dead_leaves_image(256, np.random.default_rng(0), 0.0)
    textured = dead_leaves_image(256, np.random.default_rng(0), 0.4)
    assert _flat_share(flat) > 0.4
    assert _flat_share(textured) < 0.05
    # the same draws with a vanishing contrast: the same shapes, nearly flat
    faint = dead_leaves_image(256, np.random.default_rng(0), 1e-6)
    assert _flat_share(faint) > 0.4
    assert abs(float(textured.mean()) - float(faint.mean())) < 10  # modulates, does not tint
    fields = texture_fields(128, np.random.default_rng(0))
    assert len(fields) == TEXTURE_FIELDS
    for field in fields:
        assert field.shape == (128, 128)
        assert abs(float(field.mean())) < 1e-3 and float(field.std()) == pytest.approx(1, 1e-3)


def test_flat_dead_leaves_draw_no_texture_fields(monkeypatch):
    def refuse(*_):
        raise AssertionError("texture 0 drew texture fields")

    monkeypatch.setattr("smartassign.data.dead_leaves.texture_fields", refuse)
    assert _flat_share(dead_leaves_image(128, np.random.default_rng(0), 0.0)) > 0.4
    with pytest.raises(AssertionError, match="drew texture fields"):
        dead_leaves_image(128, np.random.default_rng(0), 0.2)


def test_dead_leaves_texture_is_read_from_the_params(tmp_path):
    scene = "dead_leaves/dead_leaves_00.png"
    generate(_small(dead_leaves=1, dead_leaves_texture=0.0), tmp_path / "flat")
    generate(_small(dead_leaves=1, dead_leaves_texture=0.5), tmp_path / "grain")
    assert _flat_share(read_rgb(tmp_path / "flat" / scene).pixels) > 0.4
    assert _flat_share(read_rgb(tmp_path / "grain" / scene).pixels) < 0.05


def test_a_photo_named_like_a_dead_leaves_scene_is_refused(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (80, 80)).save(photos / "dead_leaves_00.png")
    with pytest.raises(DataError, match=r"synthetic\.dead_leaves: .*dead_leaves_00"):
        generate(_small(train_photos=str(photos), dead_leaves=1), tmp_path / "out")


def test_a_training_only_photo_may_not_be_a_test_candidate(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).save(photos / name)
    data = _small(photos=str(photos), train_photos=str(photos))
    with pytest.raises(DataError, match=r"synthetic\.train_photos: a, b, c also in"):
        generate(data, tmp_path / "out")


def test_a_missing_photo_folder_names_its_parameter(tmp_path):
    with pytest.raises(DataError, match=r"synthetic\.train_photos: folder .*nowhere"):
        generate(_small(train_photos=str(tmp_path / "nowhere")), tmp_path / "out")


def test_same_parameters_give_byte_identical_files(tmp_path):
    data = _small()
    first, _ = generate(data, tmp_path / "a")
    second, _ = generate(data, tmp_path / "b")
    assert len(first) == 2 * (5 * 2 + 1 + 1)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert [(p.split, p.task) for p in first] == [(p.split, p.task) for p in second]
    generate(data.model_copy(update={"seed": 1}), tmp_path / "c")
    assert _digests(tmp_path / "a") != _digests(tmp_path / "c")


def test_no_photo_is_in_two_splits(tmp_path):
    pairs, _ = generate(_small(train_photos="builtin"), tmp_path)
    photos_of = _photos_by_split(pairs)
    assert set(photos_of) == {"train", "val", "test"}
    assert not photos_of["train"] & photos_of["val"]
    assert not photos_of["train"] & photos_of["test"]
    assert not photos_of["val"] & photos_of["test"]
    assert all(read_rgb(p.input).pixels.shape == (64, 64, 3) for p in pairs[:4])


def test_split_needs_a_training_photo():
    with pytest.raises(DataError, match="cannot give"):
        split_photos(builtin_photos()[:2], val=1, test=1, seed=0)


@pytest.mark.parametrize("task", ["rain", "snow"])
def test_input_psnr_y_falls_in_a_realistic_band(task):
    """Like the benchmarks: rain from heavy to light (RainTrainH_12 15, RainTrainL_10 25,
    Rain12 30 dB; docs/data.md), snow about 15-30."""
    params = Config().data.synthetic
    values = []
    for photo in builtin_photos():
        pixels = read_rgb(photo.path).pixels
        for index in range(4):
            rng = sample_rng(0, task, photo.name, index)
            clean = random_crop(pixels, 256, 0.5, rng)
            if task == "rain":
                degraded = add_rain(clean, rng, params.rain)
            else:
                degraded = add_snow(clean, rng, params.snow)
            values.append(psnr(degraded, clean, y_channel=True))
    low, high = BANDS[task]
    inside = np.mean([low <= v <= high for v in values])
    assert low <= np.median(values) <= high, values
    assert inside >= 0.9, sorted(values)


def test_streaks_and_flakes_leave_pixels_clear_and_only_brighten_and_haze_veils_everything():
    """Rain and snow leave part of the image untouched (heavy real rain covers most of it:
    RainTrainH streak coverage 0.5-0.9, docs/data.md) and never darken a pixel."""
    clean = np.full((96, 96, 3), 60, np.uint8)
    params = Config().data.synthetic
    clear = {"haze_probability": 0.0}
    rain = add_rain(clean, sample_rng(0, "rain", "grey", 0), params.rain.model_copy(update=clear))
    snow = add_snow(clean, sample_rng(0, "snow", "grey", 0), params.snow.model_copy(update=clear))
    for degraded in (rain, snow):
        changed = np.any(degraded != clean, axis=2)
        assert 0.005 < changed.mean() < 0.9
        assert np.all(degraded >= clean)
    hazy = params.rain.model_copy(update={"haze_probability": 1.0, "haze": (0.2, 0.2)})
    veiled = add_rain(clean, sample_rng(0, "rain", "grey", 0), hazy)
    assert np.all(veiled > clean)


def test_the_veil_pulls_towards_its_atmospheric_light():
    """``I t + A (1 - t)``: a dim light lowers a bright scene's contrast from above (as on
    RainTrainL, docs/data.md), a bright light lifts a dark one; flakes and streaks aside."""
    clean = np.full((96, 96, 3), 200, np.uint8)
    clean[::2] = 120
    params = Config().data.synthetic
    for task, add in (("rain", add_rain), ("snow", add_snow)):
        section = getattr(params, task).model_copy(update={"haze_probability": 1.0})
        if task == "rain":
            section = section.model_copy(update={"density": (0.001, 0.001)})
        else:
            section = section.model_copy(update={"density": (0.0, 0.0)})
        dim = section.model_copy(update={"haze": (0.5, 0.5), "haze_light": (0.2, 0.2)})
        bright = section.model_copy(update={"haze": (0.5, 0.5), "haze_light": (0.9, 0.9)})
        dimmed = add(clean, sample_rng(0, task, "stripes", 0), dim).astype(int)
        lifted = add(clean, sample_rng(0, task, "stripes", 0), bright).astype(int)
        assert np.median(dimmed[1::2]) < 200 and np.median(lifted[::2]) > 120
        contrast = np.median(dimmed[1::2]) - np.median(dimmed[::2])
        assert contrast < 80 * 0.95, f"{task}: the veil kept the contrast ({contrast})"


def test_user_folder_of_photos_reports_unusable_ones(tmp_path):
    photos = tmp_path / "photos"
    (photos / "trip").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png", "trip/c.png"):
        Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).save(photos / name)
    Image.new("RGB", (40, 40)).save(photos / "tiny.png")
    (photos / "broken.jpg").write_bytes(b"")
    data = _small(photos=str(photos), crops_per_photo={"train": 1, "val": 1, "test": 1})
    pairs, issues = generate(data, tmp_path / "out")
    assert {p.input.stem.rsplit("_", 1)[0] for p in pairs} == {"a", "b", "trip__c"}
    assert sorted((Path(i.path).name, i.kind) for i in issues) == [
        ("broken.jpg", "empty_file"),
        ("tiny.png", "too_small"),
    ]


def test_turned_scenes_turn_training_crops_alone_under_the_same_rain(tmp_path):
    no_haze = {"haze_probability": 0.0}
    plain, _ = generate(_small(rain=no_haze), tmp_path / "plain")
    turned, _ = generate(_small(rain=no_haze, turned_scenes=1.0), tmp_path / "turned")
    assert [(p.input.name, p.split) for p in turned] == [(p.input.name, p.split) for p in plain]
    for before, after in zip(plain, turned, strict=True):
        clean, degraded = read_rgb(before.target).pixels, read_rgb(before.input).pixels
        clean_after, degraded_after = read_rgb(after.target).pixels, read_rgb(after.input).pixels
        if before.split != "train":
            assert np.array_equal(clean_after, clean) and np.array_equal(degraded_after, degraded)
            continue
        ways = [k for k in (1, 3) if np.array_equal(clean_after, np.rot90(clean, k))]
        assert len(ways) == 1, f"{after.target} is not its plain crop turned by 90 degrees"
        if before.task == "rain":  # the same streaks, added where neither scene clips them
            unclipped = (degraded.max(axis=2) < 255) & (degraded_after.max(axis=2) < 255)
            layer = degraded_after.astype(int) - clean_after.astype(int)
            plain_layer = degraded.astype(int) - clean.astype(int)
            assert np.abs(layer - plain_layer)[unclipped].max() <= 1


def test_turned_scenes_turn_about_their_share_of_training_crops(tmp_path):
    sizes = {"train": 12, "val": 1, "test": 1}
    plain, _ = generate(_small(crops_per_photo=sizes), tmp_path / "plain")
    half, _ = generate(_small(crops_per_photo=sizes, turned_scenes=0.5), tmp_path / "half")
    train = [(a, b) for a, b in zip(plain, half, strict=True) if a.split == "train"]
    turned = sum(
        not np.array_equal(read_rgb(a.target).pixels, read_rgb(b.target).pixels) for a, b in train
    )
    assert 0.3 * len(train) < turned < 0.7 * len(train)
