"""Ray Tune sweeps over the training configuration (``smartassign tune``, docs/tuning.md).

Modules: :mod:`~smartassign.tuning.space` (search space), :mod:`~smartassign.tuning.trainable`
(one trial), :mod:`~smartassign.tuning.sweep` (the Tuner), :mod:`~smartassign.tuning.runs`
(MLflow runs and the summary), :mod:`~smartassign.tuning.best` (the best-params file and
``train.tuned_params``), :mod:`~smartassign.tuning.experiment` (resume bookkeeping and Tune
settings shared with the ablation study). Only ``best`` is imported here; the others load Ray.
"""

from smartassign.tuning.best import apply_tuned

__all__ = ["apply_tuned"]
