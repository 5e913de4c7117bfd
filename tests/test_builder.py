"""The builder: params.yaml's ``model:`` section -> the config-free network."""

import inspect

import pytest

from smartassign.builder import ROUTING_KEYS, build_model, routing_for
from smartassign.config import ModelConfig, Variant, load_config
from smartassign.model import Routing, SmartAssign

ARGUMENTS = {
    name: parameter
    for name, parameter in inspect.signature(SmartAssign).parameters.items()
    if name != "routing"
}


def test_every_model_key_is_a_network_argument_or_chooses_the_routing():
    assert set(ARGUMENTS) == set(ModelConfig.model_fields) - ROUTING_KEYS
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in ARGUMENTS.values())


def test_the_network_defaults_are_the_model_section_defaults():
    defaults = ModelConfig()
    assert {name: p.default for name, p in ARGUMENTS.items()} == {
        name: getattr(defaults, name) for name in ARGUMENTS
    }
    assert SmartAssign().routing == routing_for(defaults) == Routing()


def test_the_built_network_follows_params_yaml():
    cfg = load_config("params.yaml")
    model = build_model(cfg)
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    expected = SmartAssign(**cfg.model.model_dump(exclude=set(ROUTING_KEYS)))
    assert shapes == {key: value.shape for key, value in expected.state_dict().items()}
    assert model.routing.name == cfg.model.variant.value


@pytest.mark.parametrize("variant", list(Variant))
def test_each_variant_routing_is_named_after_it(variant):
    assert routing_for(ModelConfig(variant=variant)).name == variant.value
