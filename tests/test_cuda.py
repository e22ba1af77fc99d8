"""Training on a CUDA GPU: NST distillation with bf16 autocast and channels_last (skipped
without CUDA), and the error a machine without one gives for ``--device cuda``."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from optuna_mfkd.cli import main
from optuna_mfkd.nasbench201.network import build_network
from optuna_mfkd.training.data import ArrayDataset
from optuna_mfkd.training.trainer import TeacherOutputCache, TrainConfig, train

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


def _cifar_like(n: int = 128, classes: int = 10, seed: int = 0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return ArrayDataset(images, torch.arange(n) % classes, classes, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))


def _record_convs(net: torch.nn.Module, seen: list[tuple[torch.dtype, bool]]) -> None:
    """Record the dtype and memory format of every convolution's output."""
    def hook(module, inputs, output):
        seen.append((output.dtype, output.is_contiguous(memory_format=torch.channels_last)))

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)


@pytest.mark.cuda
@needs_cuda
def test_nst_training_on_cuda_uses_bf16_autocast_and_channels_last() -> None:
    torch.manual_seed(0)
    teacher, student = build_network(RESNET, 10), build_network(CELL, 10)
    student_convs: list[tuple[torch.dtype, bool]] = []
    teacher_convs: list[tuple[torch.dtype, bool]] = []
    _record_convs(student, student_convs)
    _record_convs(teacher, teacher_convs)
    data = _cifar_like()
    cfg = TrainConfig(epochs=1, batch_size=32, loss="nst", device="cuda", progress=False)
    cache = TeacherOutputCache(device="cuda")
    result = train(CELL, data, data, cfg, teacher=teacher, teacher_cache=cache, model=student)

    assert next(student.parameters()).device.type == "cuda"
    convs = [m for m in student.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert student_convs and teacher_convs
    assert {dtype for dtype, _ in student_convs + teacher_convs} == {torch.bfloat16}  # autocast
    assert all(cl for _, cl in student_convs + teacher_convs)  # channels_last activations
    assert len(cache) == 4  # 128 images / batch 32: the teacher's outputs of every batch
    assert math.isfinite(result.final_loss) and 0.0 <= result.val_acc <= 100.0
    assert result.images_per_second > 0


@pytest.mark.cuda
@needs_cuda
def test_hybrid_search_on_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented GPU command, on tiny data: live NST low fidelity on the GPU."""
    from conftest import write_image_zip

    from optuna_mfkd.distill.teacher import save_teacher

    monkeypatch.setenv("MFKD_CACHE", str(tmp_path / "cache"))
    data = write_image_zip(tmp_path / "tiny.zip", "cifar10", 32, counts=(("train", 16), ("test", 4)))
    teacher = save_teacher(build_network(RESNET, 3), tmp_path / "teacher.pth")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["search", "--mode", "hybrid", "--device", "cuda", "--storage", url, "--data-root", str(data),
                 "--teacher", str(teacher), "--n1", "2", "--n2", "1", "--n-candidates", "100", "--seed", "0",
                 "--train-images", "32", "--eval-images", "16", "--n-trials", "4", "--budget", "1e9",
                 "--quiet"]) == 0
    trials = optuna.load_study(study_name="mfkd", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    low = [t for t in trials if t.user_attrs["fidelity"] == "1ep-nst"]
    assert len(low) == 2 and all(t.user_attrs["kd_loss"] == "nst" and not t.user_attrs["cached"] for t in low)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--mode", "hybrid", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0] and "CUDA is not available" in err[0], err
    assert not (tmp_path / "optuna-mfkd.db").exists() or optuna.get_all_study_summaries(
        f"sqlite:///{tmp_path / 'optuna-mfkd.db'}") == []
