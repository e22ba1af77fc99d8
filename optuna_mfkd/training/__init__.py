"""Training NB201 cells: in-memory data, the trainer, the evaluation cache and objectives.

Modules load torch and torchvision, so import them directly
(``optuna_mfkd.training.objectives.NB201TrainingObjective``, ...).
"""
