"""Data: benchmark layouts, the synthetic default, the prepare stage and the training Dataset.

Modules, one concern each (docs/data.md has the folder trees and the file formats):

* :mod:`~smartassign.data.common`: task / split names, :class:`Pair`, :class:`Issue`,
  :class:`DataError`;
* :mod:`~smartassign.data.images`: reading any image as 8-bit RGB, with safe fixes;
* :mod:`~smartassign.data.pairing`: file-name rules pairing inputs with targets;
* :mod:`~smartassign.data.layouts`: one adapter per published layout, listing pairs;
* :mod:`~smartassign.data.synthetic`: synthetic rain and snow over clean photographs;
* :mod:`~smartassign.data.manifest`: manifest records, reading and writing;
* :mod:`~smartassign.data.report`: counts, input PSNR / SSIM, skipped and fixed files;
* :mod:`~smartassign.data.prepare`: the DVC stage ``prepare`` (:func:`prepare`);
* :mod:`~smartassign.data.transforms`: paired albumentations augmentation;
* :mod:`~smartassign.data.sampling`: balanced rain / snow and sharded samplers;
* :mod:`~smartassign.data.dataset`: :class:`PairedImageDataset`, :func:`build_dataloader`.

Importing this package is cheap; torch and albumentations load with the dataset module.
"""

from smartassign.data.common import SPLITS, TASKS, DataError, Issue, Pair, task_label

__all__ = ["SPLITS", "TASKS", "DataError", "Issue", "Pair", "task_label"]
