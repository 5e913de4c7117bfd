"""One typed configuration object, loaded from ``params.yaml``.

Every hyper-parameter of the project lives in ``params.yaml`` under ten sections
(``model``, ``loss``, ``data``, ``train``, ``tune``, ``ablation``, ``registry``,
``inference``, ``evaluate``, ``analysis``), one module each here. :func:`load_config` reads
the file into :class:`Config`; unknown keys and out-of-range values are refused with a
:class:`ConfigError` that names the offending key, e.g. ``model.channels``. The rules for
setting keys from a sweep or study are :mod:`smartassign.config.overrides`'.

Nothing here imports another part of the package: everything else imports the config.
"""

from smartassign.config.analysis import AnalysisConfig
from smartassign.config.base import (
    QUALITY_METRICS,
    TASKS,
    CharbonnierForm,
    ConfigError,
    Section,
    Variant,
)
from smartassign.config.data import (
    DataConfig,
    DatasetSpec,
    Precrop,
    RainSynthesis,
    SnowSynthesis,
    SplitSizes,
    SyntheticData,
)
from smartassign.config.evaluate import REAL_CHECK_SETS, EvaluateConfig
from smartassign.config.inference import InferenceConfig
from smartassign.config.loss import LossConfig
from smartassign.config.model import ModelConfig
from smartassign.config.overrides import (
    STUDY_RESERVED,
    SWEEP_RESERVED,
    TRIAL_KEYS,
    check_settable,
    check_value,
    leaf_field,
    override_in,
)
from smartassign.config.registry import RegistryConfig
from smartassign.config.root import Config, config_from_dict, load_config
from smartassign.config.search_space import Domain, parse_space
from smartassign.config.sweeps import AblationConfig, TuneConfig
from smartassign.config.train import TrainConfig

__all__ = [
    "QUALITY_METRICS",
    "REAL_CHECK_SETS",
    "STUDY_RESERVED",
    "SWEEP_RESERVED",
    "TASKS",
    "TRIAL_KEYS",
    "AblationConfig",
    "AnalysisConfig",
    "CharbonnierForm",
    "Config",
    "ConfigError",
    "DataConfig",
    "DatasetSpec",
    "Domain",
    "EvaluateConfig",
    "InferenceConfig",
    "LossConfig",
    "ModelConfig",
    "Precrop",
    "RainSynthesis",
    "RegistryConfig",
    "Section",
    "SnowSynthesis",
    "SplitSizes",
    "SyntheticData",
    "TrainConfig",
    "TuneConfig",
    "Variant",
    "check_settable",
    "check_value",
    "config_from_dict",
    "leaf_field",
    "load_config",
    "override_in",
    "parse_space",
]
