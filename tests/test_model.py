import pytest
import torch
from torch import nn

from smartassign.builder import build_model
from smartassign.config import ModelConfig, Variant
from smartassign.model import SmartAssign
from smartassign.model.layers import WindowSelfAttention
from smartassign.model.network import RecognitionDecoder

TINY = {
    "channels": 8,
    "sam_hidden": 4,
    "patch_size": 2,
    "embed_dim": 16,
    "num_blocks": 2,
    "num_heads": 2,
    "window_size": 4,
    "gkfm_hidden": 8,
    "gkfm_out": 6,
    "decoder_hidden": 8,
    "drm_grid": 2,
    "drm_dim": 4,
    "veil_removal": True,  # off by default; on here so its paths stay covered
}


def tiny(**changes) -> SmartAssign:
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**TINY, **changes}))


@pytest.mark.parametrize(("height", "width"), [(16, 16), (37, 53), (64, 20), (100, 33)])
def test_any_size_from_16_pixels_keeps_its_shape(height, width):
    out = tiny()(torch.rand(2, 3, height, width))
    assert out.derain.shape == out.desnow.shape == (2, 3, height, width)
    assert out.logits.shape == (2, 2)
    for kind in ("rk", "ck", "sk"):
        assert out.knowledge.tensors[kind].shape == (2, 6, height, width)
        assert out.knowledge.matrices[kind].shape == (2, 6, 4)
        assert out.knowledge.gates[kind].shape == (2, 8)


def test_untrained_residual_decoders_return_the_input():
    x = torch.rand(1, 3, 24, 24)
    out = tiny(veil_removal=False)(x)
    torch.testing.assert_close(out.derain, x)
    torch.testing.assert_close(out.desnow, x)


def test_untrained_model_returns_the_input_with_its_small_starting_veil_removed():
    x = torch.rand(1, 3, 24, 24)
    model = tiny()
    out = model(x)
    cleared = model.remove_veil(x)
    torch.testing.assert_close(out.derain, cleared)
    torch.testing.assert_close(out.desnow, cleared)
    assert 0 < (x - cleared).abs().max() < 0.01


def test_given_the_tasks_each_decoder_restores_only_its_own_samples():
    model = tiny()
    for decoder in model.decoders.values():  # residual decoders start as the identity
        nn.init.normal_(decoder.convs[-1].weight, std=0.1)
    image, task = torch.rand(5, 3, 37, 29), torch.tensor([1, 0, 0, 1, 1])
    both, routed = model(image), model(image, task)
    assert routed.derain is None and routed.desnow is None
    expected = torch.where(task.view(-1, 1, 1, 1) == 1, both.desnow, both.derain)
    torch.testing.assert_close(routed.restored, expected)
    torch.testing.assert_close(routed.logits, both.logits)
    single = tiny(variant="V4", single_task="rain")(image[:2], torch.tensor([0, 0]))
    assert single.restored is None and single.derain.shape == (2, 3, 37, 29)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_in_reduced_precision(dtype):
    model = tiny()
    seen: list[torch.dtype] = []
    model.encoder.blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.autocast("cpu", dtype=dtype):
        out = model(torch.rand(2, 3, 32, 40))
    assert seen == [dtype]
    assert torch.isfinite(out.derain.float()).all()
    out.derain.float().mean().backward()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (torch.rand(1, 1, 32, 32), "3 \\(RGB\\) channels, got 1"),
        (torch.rand(1, 4, 32, 32), "3 \\(RGB\\) channels, got 4"),
        (torch.rand(1, 3, 15, 64), "15x64 pixels; both sides must be at least 16"),
        (torch.rand(3, 32, 32), "B x 3 x H x W"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN or infinite"),
        (torch.full((1, 3, 32, 32), float("inf")), "NaN or infinite"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "float tensor"),
    ],
)
def test_bad_input_is_a_clear_value_error(image, message):
    with pytest.raises(ValueError, match=message):
        tiny()(image)


def _names(model: nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[0] for name, _ in model.named_parameters()}


def _has(model: nn.Module, prefix: str) -> bool:
    return any(name.startswith(prefix) for name in _names(model))


def test_full_model_has_every_part():
    model = tiny()
    for prefix in (
        "veil.features",
        "veil.head",
        "encoder.project",
        "encoder.sam",
        "encoder.patch_embed",
        "encoder.blocks.0.attn",
        "encoder.blocks.0.conv",
        "encoder.blocks.0.conv_gate",
        "gkfm.rk",
        "gkfm.ck",
        "gkfm.sk",
        "decoders.derain",
        "decoders.desnow",
        "recognition",
        "drm",
    ):
        assert _has(model, prefix), prefix
    assert model.decoders["derain"].convs[0].in_channels == 12  # F_rk + F_ck


def test_each_variant_removes_exactly_its_part():
    full = _names(tiny())
    removed = {
        Variant.V1: {"drm"},
        Variant.V2: {"gkfm", "drm"},
        Variant.V3: {f"encoder.blocks.{i}.{p}" for i in (0, 1) for p in ("conv", "norm_conv")},
        Variant.V5: {"recognition"},
    }
    for variant, parts in removed.items():
        names = _names(tiny(variant=variant))
        gone = full - names
        assert gone, variant
        assert all(any(n.startswith(p) for p in parts) for n in gone), (variant, gone)
        assert all(not any(n.startswith(p) for p in parts) for n in names), (variant, parts)
    v2 = tiny(variant=Variant.V2)
    assert v2.decoders["derain"].convs[0].in_channels == 8  # decoders read F_wk
    assert v2(torch.rand(1, 3, 16, 16)).knowledge is None


@pytest.mark.parametrize(("task", "kept", "dropped"), [("rain", "rk", "sk"), ("snow", "sk", "rk")])
def test_single_task_variant_keeps_one_task(task, kept, dropped):
    model = tiny(variant=Variant.V4, single_task=task)
    assert _has(model, f"gkfm.{kept}") and _has(model, "gkfm.ck")
    assert not _has(model, f"gkfm.{dropped}")
    assert not _has(model, "recognition")
    out = model(torch.rand(1, 3, 16, 16))
    assert (out.derain is None) == (task == "snow")
    assert (out.desnow is None) == (task == "rain")
    assert set(out.knowledge.matrices) == {kept, "ck"}


@pytest.mark.parametrize("variant", [Variant.K1, Variant.K2])
def test_knowledge_variants_freeze_the_backbone(variant):
    model = tiny(variant=variant)
    for name, parameter in model.named_parameters():
        frozen = name.startswith(("veil.", "encoder.", "gkfm."))
        assert parameter.requires_grad is not frozen, name
    assert model.decoders["derain"].convs[0].in_channels == 6
    assert model.drm is None


def _depends(model: SmartAssign, head: str, kind: str) -> bool:
    """Whether ``head``'s output changes when the knowledge ``kind`` is perturbed."""
    torch.manual_seed(1)
    for decoder in model.decoders.values():
        nn.init.normal_(decoder.convs[-1].weight, std=0.1)
    x = torch.rand(1, 3, 16, 16)
    reference = getattr(model(x), head)
    handle = model.gkfm[kind].register_forward_hook(
        lambda module, inputs, output: (output[0] + 1.0, output[1])
    )
    changed = getattr(model(x), head)
    handle.remove()
    return not torch.allclose(reference, changed)


@pytest.mark.parametrize(
    ("variant", "head", "reads"),
    [
        (Variant.V6, "derain", {"rk", "ck"}),
        (Variant.V6, "desnow", {"sk", "ck"}),
        (Variant.V6, "logits", {"rk", "sk"}),
        (Variant.K1, "derain", {"ck"}),
        (Variant.K1, "desnow", {"ck"}),
        (Variant.K2, "derain", {"rk"}),
        (Variant.K2, "desnow", {"sk"}),
    ],
)
def test_tkff_routes_each_kind_of_knowledge_to_its_heads(variant, head, reads):
    model = tiny(variant=variant)
    for kind in ("rk", "ck", "sk"):
        assert _depends(model, head, kind) == (kind in reads), (head, kind)


def test_backbone_transfer_for_table_4():
    trained = tiny()
    frozen = tiny(variant=Variant.K2)
    frozen.load_backbone(trained.backbone_state_dict())
    for key, value in trained.backbone_state_dict().items():
        torch.testing.assert_close(frozen.state_dict()[key], value)
    with pytest.raises(ValueError, match="backbone state lacks"):
        frozen.load_backbone({})


def test_shifted_window_attention_equals_global_attention_on_one_window():
    torch.manual_seed(0)
    windowed = WindowSelfAttention(16, 2, window=8, shift=False)
    global_ = WindowSelfAttention(16, 2, window=0, shift=False)
    global_.load_state_dict(windowed.state_dict())
    tokens = torch.randn(2, 8, 8, 16)
    torch.testing.assert_close(windowed(tokens), global_(tokens))


def test_shifted_windows_do_not_mix_opposite_borders():
    torch.manual_seed(0)
    attention = WindowSelfAttention(8, 1, window=4, shift=True)
    tokens = torch.randn(1, 8, 8, 8, requires_grad=True)
    out = attention(tokens)
    # the top-left token's window after the shift is its own 2x2 corner region
    out[0, 0, 0].sum().backward()
    touched = tokens.grad[0].abs().sum(-1) > 0
    assert touched[:2, :2].all()
    assert touched.sum() == 4


def test_torch_export_captures_the_network_despite_its_input_checks():
    class Derain(nn.Module):
        def __init__(self, model: SmartAssign) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.model(image).derain

    model = tiny().eval()
    image = torch.rand(1, 3, 40, 48)
    program = torch.export.export(Derain(model), (image,), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(image), model(image).derain)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(torch.full((1, 3, 40, 48), float("nan")))


@pytest.mark.parametrize("pool", ["max", "mean"])
def test_recognition_averages_the_logits_of_training_sized_windows(pool):
    torch.manual_seed(0)
    windowed = RecognitionDecoder(6, 4, pool, window=32)
    whole = RecognitionDecoder(6, 4, pool, window=0)
    whole.load_state_dict(windowed.state_dict())
    crop = torch.rand(2, 6, 32, 32)
    torch.testing.assert_close(windowed(crop), whole(crop))

    image = torch.rand(2, 6, 64, 96)
    features = windowed.convs(image)
    blocks = features.unfold(2, 8, 8).unfold(3, 8, 8).flatten(-2)
    pooled = blocks.amax(dim=-1) if pool == "max" else blocks.mean(dim=-1)
    expected = windowed.fc(pooled.flatten(2).transpose(1, 2)).mean(dim=1)
    torch.testing.assert_close(windowed(image), expected)
    if pool == "max":  # a mean of equal windows' linear logits is the whole-image one
        assert not torch.allclose(windowed(image), whole(image))
