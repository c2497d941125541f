"""Adversarial losses (pure functions of D's outputs) and D's regularizers."""
from ganforge.losses.adversarial import LOSSES, AdversarialLoss, mmd2, register_loss
from ganforge.losses.regularizers import GradientPenalty, R1Penalty, WeightClip

__all__ = ["LOSSES", "AdversarialLoss", "GradientPenalty", "R1Penalty", "WeightClip", "mmd2",
           "register_loss"]
