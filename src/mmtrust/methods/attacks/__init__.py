"""Adversarial attacks: the attack core (:class:`Attack`), PGD-Imp and the baselines, all registered.

    import mmtrust
    atk = mmtrust.create_method("pgd-imp", preset="paper")   # victim: MobileNetV2 (shipped ImageNet weights)
    adv = atk(images)                                        # images (B, 3, 224, 224) in [0, 1]
    atk = PGDImp.wrap(my_model, mean=(0.5,), std=(0.5,))     # any classifier
"""

from .base import Attack, AttackConfig, AttackGradientError, lp_norm, project, step_direction
from .baselines import CWL2, FGSM, PGD, PGDL2, DeepFool
from .pgd_imp import PGDImp, PGDImpL2

__all__ = ["Attack", "AttackConfig", "AttackGradientError", "lp_norm", "project", "step_direction", "FGSM",
           "PGD", "PGDL2", "CWL2", "DeepFool", "PGDImp", "PGDImpL2"]
