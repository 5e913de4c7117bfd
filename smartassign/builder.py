"""The network of a configuration: ``params.yaml``'s ``model:`` section -> :class:`SmartAssign`.

The architecture files (``smartassign/model/``) take plain keyword arguments and a
:class:`~smartassign.model.network.Routing`; this module is the one place that reads the
config for them (config -> builder -> arch).
"""

from __future__ import annotations

from smartassign.config import Config, ModelConfig, Variant
from smartassign.model.network import KINDS, Routing, SmartAssign

ROUTING_KEYS = frozenset({"variant", "single_task"})
"""``model:`` keys that choose the :class:`Routing`; every other key is an argument of
:class:`SmartAssign` of the same name."""


def routing_for(cfg: ModelConfig) -> Routing:
    """The TKFF routing (Eq. 3) of a variant; each ablation removes exactly its part.

    V6 is Eq. 3. V1 drops the DRM/contrast, V2 feeds ``F_wk`` to every head (conventional
    MTL, no GKFM), V3 drops the gated CNN branch, V4 keeps only one task's GKFMs and
    decoder (the contrast then runs over that task's two kinds), V5 drops ``D_re``, K1/K2
    freeze encoder and GKFMs and feed the restoration decoders only ``F_ck`` (K1) or only
    ``F_rk`` / ``F_sk`` (K2).
    """
    variant = cfg.variant
    name = variant.value
    if variant is Variant.V2:
        return Routing(("wk",), ("wk",), ("wk",), kinds=(), contrast=False, name=name)
    if variant is Variant.V4:
        if cfg.single_task == "rain":
            return Routing(("rk", "ck"), None, None, kinds=("rk", "ck"), name=name)
        return Routing(None, ("sk", "ck"), None, kinds=("ck", "sk"), name=name)
    if variant is Variant.K1:
        return Routing(("ck",), ("ck",), contrast=False, frozen_backbone=True, name=name)
    if variant is Variant.K2:
        return Routing(("rk",), ("sk",), contrast=False, frozen_backbone=True, name=name)
    return Routing(
        recognition=("rk", "sk") if cfg.recognises else None,
        kinds=KINDS,
        contrast=variant is not Variant.V1,
        gated_cnn=variant is not Variant.V3,
        name=name,
    )


def build_model(cfg: Config | ModelConfig) -> SmartAssign:
    """The network of the whole :class:`Config` or of its ``model`` section."""
    model_cfg = cfg.model if isinstance(cfg, Config) else cfg
    arguments = model_cfg.model_dump(exclude=set(ROUTING_KEYS))
    return SmartAssign(**arguments, routing=routing_for(model_cfg))
