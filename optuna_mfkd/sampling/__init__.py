"""The parts of :class:`~optuna_mfkd.sampler.MFKDSampler`, one job per module.

- :mod:`~optuna_mfkd.sampling.options`: the validated, frozen options and their named defaults;
- :mod:`~optuna_mfkd.sampling.history`: the one reader (and writer) of the study;
- :mod:`~optuna_mfkd.sampling.candidates`: point keys, grids, restricted levels, random free points;
- :mod:`~optuna_mfkd.sampling.proposer`: fit -> pending points -> maximise -> fallback;
- :mod:`~optuna_mfkd.sampling.strategies`: warm-up and level choice (``paper``, ``cost-aware``).
"""
