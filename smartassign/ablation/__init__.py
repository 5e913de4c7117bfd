"""The ablation study of paper Tables 3 and 4 (``smartassign ablate``, docs/ablation.md).

Modules: :mod:`~smartassign.ablation.arms` (the arms and the configuration of each run),
:mod:`~smartassign.ablation.trainable` (one run, a Ray Tune trial),
:mod:`~smartassign.ablation.study` (the two Tune grids and the MLflow parent run),
:mod:`~smartassign.ablation.report` (the tables, metrics, per-run CSV and bar plot). Nothing
is imported here: ``arms`` is read at config-load time, the others load Ray and matplotlib.
"""
