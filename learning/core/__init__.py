"""Model building, training and scoring for active learning, as pure torch/MONAI/numpy (no Django).

- :func:`build_network` (:mod:`.nets`): a network from a versioned config dict; classifiers are
  :class:`Classifier` (``features`` -> ``dropout`` -> ``head``, with ``embed``) around smallcnn, DenseNet-121,
  ResNet-10/18; segmentation uses a UNet.
- :func:`train_transforms` / :func:`eval_transforms` (:mod:`.transforms`): MONAI dictionary pipelines.
- :func:`train_model` (:mod:`.train`): class-balanced training with early stopping on validation AUC/Dice.
- :func:`score_items` / :func:`evaluate` (:mod:`.score`): MC-dropout probabilities and embeddings for
  :func:`learning.strategies.rank`, and validation metrics.
"""

from .nets import CLASSIFIERS, CONFIG_VERSION, NETWORKS, Classifier, build_network, validate_config
from .score import (
    Prepared,
    ScoreResult,
    classification_metrics,
    dice_per_class,
    evaluate,
    prepare_items,
    score_items,
)
from .train import TrainResult, class_weights, model_from_state, train_model
from .transforms import eval_transforms, train_transforms

__all__ = [
    "CLASSIFIERS",
    "CONFIG_VERSION",
    "NETWORKS",
    "Classifier",
    "Prepared",
    "ScoreResult",
    "TrainResult",
    "build_network",
    "class_weights",
    "classification_metrics",
    "dice_per_class",
    "eval_transforms",
    "evaluate",
    "model_from_state",
    "prepare_items",
    "score_items",
    "train_model",
    "train_transforms",
    "validate_config",
]
