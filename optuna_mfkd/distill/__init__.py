"""Knowledge distillation for the low fidelity: losses (CE, Hinton KD, NST) and teachers."""

from optuna_mfkd.distill.losses import ce_loss, hinton_kd_loss, nst_loss, nst_loss_subset

__all__ = ["ce_loss", "hinton_kd_loss", "nst_loss", "nst_loss_subset"]
