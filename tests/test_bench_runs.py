"""Run names: studies stored under an old method name are read under the current one."""

from __future__ import annotations

import optuna
import pytest

from optuna_mfkd.bench import catalog, harness
from optuna_mfkd.bench.methods import METHODS, reference_methods
from optuna_mfkd.bench.results import load_runs
from optuna_mfkd.bench.runs import (
    FINISHED_ATTR,
    LEGACY_METHODS,
    META_ATTR,
    RESULT_ATTR,
    RunSpec,
    as_storage,
    check_no_legacy_clash,
    current_name,
    finished_studies,
)

OLD_PAPER = "MFKDSampler, two levels (AR1 co-kriging)"  # what the NB201 benchmark's mfkd recorded


def _stored(storage: optuna.storages.BaseStorage, name: str, description: str) -> None:
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    study.set_user_attr(META_ATTR, {"method_description": description, "budget": 1.0})
    study.set_user_attr(RESULT_ATTR, {"n_trials": 0, "final_test": None, "final_val": None, "cost": [], "test": []})
    study.set_user_attr(FINISHED_ATTR, True)


def test_old_mfkd_with_the_papers_settings_reads_as_mfkd_paper(sqlite_url):
    storage = as_storage(sqlite_url)
    _stored(storage, "mf/cifar10/mfkd/seed-0", OLD_PAPER)
    _stored(storage, "mf/cifar100/mfkd/seed-0", METHODS["mfkd"].description)  # the defaults: stays mfkd
    assert LEGACY_METHODS == {("mfkd", OLD_PAPER): "mfkd-paper"}
    assert current_name("mf/cifar10/mfkd/seed-0", {"method_description": OLD_PAPER}) == "mf/cifar10/mfkd-paper/seed-0"
    assert {(r.dataset, r.method) for r in load_runs(sqlite_url)} == {("cifar10", "mfkd-paper"), ("cifar100", "mfkd")}
    assert finished_studies(storage) == {"mf/cifar10/mfkd-paper/seed-0", "mf/cifar100/mfkd/seed-0"}

    mf = catalog.make_problem("mf/cifar10")
    # A new mfkd run (the sampler's defaults) may not take the old study's name ...
    with pytest.raises(ValueError, match="'mf/cifar10/mfkd/seed-0' from before .* 'mf/cifar10/mfkd-paper/seed-0'"):
        check_no_legacy_clash(storage, [RunSpec(mf, "mfkd", 0)])
    with pytest.raises(ValueError, match="renamed"):
        harness.run_specs(storage, [RunSpec(mf, "mfkd", 0)], progress=False)
    # ... the old study counts as the mfkd-paper run (skipped on resume, deleted by --redo) ...
    assert harness.run_specs(storage, [RunSpec(mf, "mfkd-paper", 0)], progress=False) == [
        {"study": "mf/cifar10/mfkd-paper/seed-0", "skipped": True}]
    assert harness.forget(storage, [RunSpec(mf, "mfkd-paper", 0)], ["mfkd-paper"]) == ["mf/cifar10/mfkd-paper/seed-0"]
    assert [s.study_name for s in storage.get_all_studies()] == ["mf/cifar100/mfkd/seed-0"]
    # ... and a storage holding both is the same run twice.
    _stored(storage, "mf/cifar10/mfkd/seed-0", OLD_PAPER)
    _stored(storage, "mf/cifar10/mfkd-paper/seed-0", METHODS["mfkd-paper"].description)
    with pytest.raises(ValueError, match="'mf/cifar10/mfkd-paper/seed-0' is finished in both"):
        load_runs(sqlite_url)


def test_references_are_data_on_the_methods():
    # The MFKDSampler variants by rank; mfkd-paper only where mfkd did not run.
    assert reference_methods({"random", "mfkd", "mfkd-paper", "gp"}) == ["mfkd"]
    assert reference_methods({"random", "mfkd-paper", "gp"}) == ["mfkd-paper"]
    assert reference_methods({"mfkd-gpr", "mfkd-ce", "mfkd-nst", "mfkd-paper", "re"}) == [
        "mfkd-nst", "mfkd-paper", "mfkd-ce", "mfkd-gpr"]
    assert reference_methods({"mfkd", "gp"}, references=["gp", "tpe"]) == ["gp"]


def test_mf3_needs_a_pool_given_explicitly(monkeypatch):
    monkeypatch.delenv("MFKD_POOL", raising=False)
    with pytest.raises(ValueError, match=r"give --pool FILE .* or set \$MFKD_POOL") as info:
        catalog.make_problem("mf3/cifar10")
    assert "\n" not in str(info.value)
    assert catalog.expand(["mf", "branin", "mf/cifar10"]) == ["mf/cifar10", "mf/cifar100", "mf/imagenet16",
                                                              "branin/1-level"]
    assert catalog.expand(["tiny"], {"tiny": ("branin/1-level", "hartmann6/1-level")}) == [
        "branin/1-level", "hartmann6/1-level"]
