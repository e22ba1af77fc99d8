"""Trainer, evaluation cache and the training objectives, end to end on tiny synthetic data."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from optuna_mfkd.distill.teacher import save_teacher
from optuna_mfkd.nasbench201.network import build_network
from optuna_mfkd.nasbench201.space import Architecture
from optuna_mfkd.training.cache import EvaluationCache, cache_key
from optuna_mfkd.training.data import ArrayDataset
from optuna_mfkd.training.objectives import (
    CellEvaluator,
    HybridNB201Objective,
    NB201TrainingObjective,
)
from optuna_mfkd.training.trainer import DivergenceError, TeacherOutputCache, TrainConfig, train

CELL = "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|"
SMALL = {"epochs": 1, "train_images": 16, "eval_images": 16, "batch_size": 8}


def _tiny(n=24, h=8, classes=3, seed=0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, h, h), generator=g, dtype=torch.uint8)
    return ArrayDataset(images, torch.arange(n) % classes, classes, (0.5,) * 3, (0.25,) * 3)


@pytest.fixture
def tiny_zip(tmp_path, monkeypatch):
    from conftest import write_image_zip

    monkeypatch.setenv("MFKD_CACHE", str(tmp_path / "cache"))
    return write_image_zip(tmp_path / "tiny.zip", "d", 8)


@pytest.fixture
def teacher_file(tmp_path):
    torch.manual_seed(0)
    return save_teacher(build_network(CELL, 3), tmp_path / "teacher.pth")


@pytest.mark.parametrize("loss", ["ce", "kd", "nst"])
def test_train_runs_and_is_deterministic(loss) -> None:
    data = _tiny()
    teacher = build_network(CELL, 3)
    cfg = TrainConfig(loss=loss, epochs=2, batch_size=8, progress=False, nst_layers=(2, 5))
    seen = []
    a = train(CELL, data, data, cfg, teacher=teacher, on_epoch_end=lambda e, acc: seen.append(e))
    b = train(CELL, data, data, cfg, teacher=teacher)
    assert seen == [1, 2] and len(a.epoch_acc) == 2
    assert 0.0 <= a.val_acc <= 100.0 and a.images_per_second > 0
    assert a.final_loss == pytest.approx(b.final_loss, rel=1e-4)


def test_teacher_output_cache_gives_same_training() -> None:
    data = _tiny()
    teacher = build_network(CELL, 3)
    cfg = TrainConfig(loss="nst", epochs=1, batch_size=8, progress=False, nst_layers=(2, 5))
    cache = TeacherOutputCache(dtype=torch.float32)
    plain = train(CELL, data, data, cfg, teacher=teacher)
    first = train(CELL, data, data, cfg, teacher=teacher, teacher_cache=cache)
    assert len(cache) == 3  # 24 images / batch 8
    second = train(CELL, data, data, cfg, teacher=teacher, teacher_cache=cache)
    assert plain.final_loss == pytest.approx(first.final_loss, rel=1e-5)
    assert second.final_loss == pytest.approx(first.final_loss, rel=1e-5)


def test_divergence_raises() -> None:
    cfg = TrainConfig(loss="ce", epochs=1, batch_size=8, lr=1e30, progress=False)
    with pytest.raises(DivergenceError, match="loss became"):
        train(CELL, _tiny(), None, cfg)


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="mse")
    with pytest.raises(ValueError, match="teacher"):
        train(CELL, _tiny(), None, TrainConfig(loss="nst", progress=False))


def test_evaluation_cache_roundtrip(sqlite_url) -> None:
    cache = EvaluationCache(sqlite_url)
    assert cache.get(CELL, {"a": 1, "b": [2, 3]}, 0) is None
    cache.put(CELL, {"b": [2, 3], "a": 1}, 0, 55.5, 12.0, {"images_per_second": 9.0})
    hit = cache.get(CELL, {"a": 1, "b": (2, 3)}, 0)  # key order and tuple/list do not matter
    assert hit is not None and hit.value == 55.5 and hit.seconds == 12.0
    assert hit.extra == {"images_per_second": 9.0}
    assert cache.get(CELL, {"a": 1, "b": [2, 3]}, 1) is None
    assert cache_key(CELL, {"a": 1}, 0) != cache_key(CELL, {"a": 2}, 0)
    # The cache lives beside an Optuna study in the same database.
    study = optuna.create_study(storage=sqlite_url, study_name="s")
    assert len(EvaluationCache(study)) == 1
    with pytest.raises(ValueError, match="RDB"):
        EvaluationCache(optuna.create_study())


def test_evaluation_cache_reads_tables_of_existing_databases(sqlite_url) -> None:
    # Databases written before keep their entries: the SQL table name never changes.
    import sqlalchemy as sa

    EvaluationCache(sqlite_url).put(CELL, {"a": 1}, 0, 61.0, 3.0)
    engine = sa.create_engine(sqlite_url)
    assert "mfkd_lowfi_cache" in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT value, seconds FROM mfkd_lowfi_cache").all() == [(61.0, 3.0)]


def test_objective_low_and_high_trials_in_sqlite_study(tiny_zip, teacher_file, sqlite_url) -> None:
    objective = NB201TrainingObjective(
        "cifar10", tiny_zip, teacher=teacher_file, cache=sqlite_url, progress=False,
        fidelities={"low": {"kd_loss": "nst", "nst_layers": [2], **SMALL},
                    "high": {"kd_loss": "ce", **SMALL, "epochs": 2}},
    )
    study = optuna.create_study(storage=sqlite_url, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    params = Architecture.from_str(CELL).params
    study.enqueue_trial(params, user_attrs={"fidelity": "low"})
    study.enqueue_trial(params, user_attrs={"fidelity": "high"})
    study.enqueue_trial(params, user_attrs={"fidelity": "low"})  # served from the cache
    study.optimize(objective, n_trials=3)
    low, high, again = study.trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert low.user_attrs["kd_loss"] == "nst" and high.user_attrs["kd_loss"] == "ce"
    assert (low.user_attrs["epochs"], high.user_attrs["epochs"]) == (1, 2)
    assert low.user_attrs["data_fraction"] == pytest.approx(16 / 24)
    assert low.user_attrs["teacher"].startswith("teacher.pth") and high.user_attrs["teacher"] is None
    for t in (low, high):
        assert t.user_attrs["cost"] > 0 and t.user_attrs["images_per_second"] > 0
    assert sorted(high.intermediate_values) == [1, 2]
    assert again.user_attrs["cached"] and again.value == low.value
    assert again.user_attrs["cost"] == low.user_attrs["cost"]


def test_objective_divergence_fails_trial_and_study_goes_on(tiny_zip, sqlite_url) -> None:
    objective = NB201TrainingObjective(
        "cifar10", tiny_zip, progress=False, default_fidelity="bad",
        fidelities={"bad": {**SMALL, "lr": 1e30}, "good": SMALL},
    )
    study = optuna.create_study(storage=sqlite_url, direction="maximize")
    params = Architecture.from_str(CELL).params
    study.enqueue_trial(params)
    study.enqueue_trial(params, user_attrs={"fidelity": "good"})
    study.optimize(objective, n_trials=2)
    bad, good = study.trials
    assert bad.state == optuna.trial.TrialState.FAIL and "loss became" in bad.user_attrs["fail_reason"]
    assert good.state == optuna.trial.TrialState.COMPLETE


def test_objective_bad_inputs(tmp_path, tiny_zip) -> None:
    with pytest.raises(ValueError, match="unknown training settings"):
        NB201TrainingObjective("cifar10", tiny_zip, fidelities={"low": {"epoch": 1}})
    objective = NB201TrainingObjective("cifar10", tmp_path / "absent.zip", fidelities={"high": SMALL})
    with pytest.raises(FileNotFoundError, match="absent.zip"):
        objective(optuna.trial.FixedTrial(Architecture.from_str(CELL).params))


class _FakeTable:
    def seconds_per_epoch(self, dataset, index):
        return 10.0 + index % 7

    def val_acc(self, dataset, index, epochs=12):
        return 50.0 + index % 13

    def test_acc(self, dataset, index, epochs=200):
        return 80.0 + index % 11


def test_hybrid_objective_costs_and_cache(tiny_zip, teacher_file, sqlite_url) -> None:
    evaluator = CellEvaluator("cifar10", tiny_zip, teacher=teacher_file, cache=sqlite_url,
                                     progress=False)
    low = {"kd_loss": "nst", "nst_layers": [2], **SMALL}
    objective = HybridNB201Objective(_FakeTable(), evaluator, low, time_ratio=1.2)
    study = optuna.create_study(storage=sqlite_url, direction="maximize")
    arch = Architecture.from_str(CELL)
    study.enqueue_trial(arch.params, user_attrs={"fidelity": "low"})
    study.enqueue_trial(arch.params, user_attrs={"fidelity": "high"})
    study.enqueue_trial(arch.params, user_attrs={"fidelity": "low"})
    study.optimize(objective, n_trials=3)
    lo, hi, again = study.trials
    spe = 10.0 + arch.index % 7
    assert lo.user_attrs["cost"] == pytest.approx(1 * (16 / 24) * spe * 1.2)
    assert hi.user_attrs["cost"] == pytest.approx(12 * spe)
    assert hi.value == 50.0 + arch.index % 13
    assert hi.user_attrs["test_acc_200ep"] == 80.0 + arch.index % 11
    assert not lo.user_attrs["cached"] and again.user_attrs["cached"] and again.value == lo.value
    assert not math.isnan(lo.value)


def test_fine_tune_teacher_is_cached(tmp_path, monkeypatch) -> None:
    from optuna_mfkd.distill.teacher import RESNET_ARCH, save_teacher
    from optuna_mfkd.nasbench201.network import build_network
    from optuna_mfkd.training.data import ArrayDataset
    from optuna_mfkd.training.teacher_training import fine_tune_teacher

    monkeypatch.setenv("MFKD_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    src = save_teacher(build_network(RESNET_ARCH, 2), tmp_path / "t.pth")
    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.randint(0, 256, (8, 3, 16, 16), generator=g, dtype=torch.uint8),
                        torch.arange(8) % 2, 2, (0.5,) * 3, (0.25,) * 3)
    tuned = fine_tune_teacher(src, data, epochs=1, lr=0.05, batch_size=4)
    before = torch.load(src, weights_only=True)["state_dict"]["classifier.weight"]
    assert not torch.equal(tuned.state_dict()["classifier.weight"], before)
    assert len(list((tmp_path / "cache" / "teachers").glob("*.pth"))) == 1
    again = fine_tune_teacher(src, data, epochs=1, lr=0.05, batch_size=4)  # loaded from the cache
    for k, v in tuned.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)


def test_teacher_command_loads_a_checkpoint(tmp_path, capsys) -> None:
    from optuna_mfkd.cli import main
    from optuna_mfkd.distill.teacher import RESNET_ARCH

    path = save_teacher(build_network(RESNET_ARCH, 3), tmp_path / "t.pth")
    assert main(["teacher", "load", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"teacher {RESNET_ARCH} (3 classes)"


def test_default_settings_keep_the_cache_identity() -> None:
    # Cache entries in existing databases are keyed by these resolved settings: the training
    # defaults may move, but their values (and JSON types) may not change silently.
    from optuna_mfkd.training.cache import canonical_settings
    from optuna_mfkd.training.objectives import resolve_settings

    low = resolve_settings({"kd_loss": "nst", "epochs": 1, "train_images": 6000, "batch_size": 64}, 25_000)
    assert canonical_settings(low) == (
        '{"batch_size":64,"epochs":1,"eval_images":null,"kd_lambda":0.9,"kd_loss":"nst","kd_tau":4.0,'
        '"lr":0.1,"nst_beta":12.5,"nst_channel_fraction":1.0,"nst_layers":[2,3,5,8,9],"train_images":6000}'
    )
    assert canonical_settings(resolve_settings({}, 25_000)) == (
        '{"batch_size":256,"epochs":12,"eval_images":null,"kd_lambda":0.9,"kd_loss":"ce","kd_tau":4.0,'
        '"lr":0.1,"nst_beta":12.5,"nst_channel_fraction":1.0,"nst_layers":[2,3,5,8,9],"train_images":null}'
    )
