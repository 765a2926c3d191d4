"""Lightning glue: the base training module, the trainer factory, checkpoints without pickle."""

from .checkpoint import SafetensorsCheckpointIO, load_method, save_method
from .module import TaskModule
from .trainer import FitResult, fit, make_trainer, weights_digest

__all__ = ["TaskModule", "fit", "make_trainer", "FitResult", "save_method", "load_method",
           "SafetensorsCheckpointIO", "weights_digest"]
