"""Distillation losses against direct formulas, and teacher files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from optuna_mfkd.distill import hinton_kd_loss, nst_loss
from optuna_mfkd.distill.losses import nst_loss_subset, nst_mmd2_per_sample, random_channel_subsets


def _mmd2_direct(fs: np.ndarray, ft: np.ndarray, c: float, d: int) -> float:
    """Eq. (4) for one sample, by explicit sums over channel pairs (float64)."""
    s = fs.reshape(fs.shape[0], -1)
    t = ft.reshape(ft.shape[0], -1)
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)

    def k(a, b):
        return (float(a @ b) + c) ** d

    tt = sum(k(t[i], t[j]) for i in range(len(t)) for j in range(len(t))) / len(t) ** 2
    ss = sum(k(s[i], s[j]) for i in range(len(s)) for j in range(len(s))) / len(s) ** 2
    ts = sum(k(t[i], s[j]) for i in range(len(t)) for j in range(len(s))) / (len(t) * len(s))
    return tt + ss - 2 * ts


@pytest.mark.parametrize("c,degree", [(0.0, 2), (0.5, 2), (1.0, 3)])
def test_nst_equals_direct_eq4(c: float, degree: int) -> None:
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 6, 3, 3, generator=g)]
    teacher = [torch.randn(3, 5, 5, 5, generator=g), torch.randn(3, 2, 3, 3, generator=g)]
    got = nst_loss(student, teacher, c=c, degree=degree).item()
    want = sum(
        np.mean([_mmd2_direct(fs[b].double().numpy(), ft[b].double().numpy(), c, degree) for b in range(3)])
        for fs, ft in zip(student, teacher, strict=True)
    )
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_two_forms_agree_and_auto_picks_cheaper() -> None:
    g = torch.Generator().manual_seed(1)
    # C < HW (NB201's shapes) and C > HW.
    for cs, ct, hw in [(16, 16, 8), (12, 9, 3)]:
        s = torch.randn(4, cs, hw, hw, generator=g)
        t = torch.randn(4, ct, hw, hw, generator=g)
        gram = nst_mmd2_per_sample(s, t, form="gram")
        spatial = nst_mmd2_per_sample(s, t, form="spatial")
        torch.testing.assert_close(gram, spatial, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(nst_mmd2_per_sample(s, t), gram, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="spatial"):
        nst_mmd2_per_sample(s, t, c=1.0, form="spatial")


def test_nst_zero_for_identical_maps_and_positive_otherwise() -> None:
    x = torch.randn(2, 8, 4, 4)
    assert nst_loss([x], [x.clone()]).item() == pytest.approx(0.0, abs=1e-6)
    assert nst_loss([x], [torch.randn(2, 8, 4, 4)]).item() > 0


def test_gradients_reach_the_student_only() -> None:
    s = torch.randn(2, 4, 6, 6, requires_grad=True)
    t = torch.randn(2, 4, 6, 6, requires_grad=True)
    nst_loss([s], [t]).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_subset_equals_nst_on_selected_channels() -> None:
    g = torch.Generator().manual_seed(2)
    s = [torch.randn(2, 8, 4, 4, generator=g), torch.randn(2, 16, 2, 2, generator=g)]
    t = [torch.randn(2, 8, 4, 4, generator=g), torch.randn(2, 16, 2, 2, generator=g)]
    full = nst_loss_subset(s, t, [None, None])
    torch.testing.assert_close(full, nst_loss(s, t))
    idx = random_channel_subsets([8, 16], 0.5, seed=3)
    assert [len(i) for i in idx] == [4, 8]
    assert torch.equal(idx[0], random_channel_subsets([8, 16], 0.5, seed=3)[0])
    got = nst_loss_subset(s, t, idx)
    want = nst_loss([s[0][:, idx[0]], s[1][:, idx[1]]], [t[0][:, idx[0]], t[1][:, idx[1]]])
    torch.testing.assert_close(got, want)


def test_hinton_kd_formula() -> None:
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    y = torch.tensor([0, 1, 2, 1, 0])
    tau, lam = 2.0, 0.7
    ps, pt = F.softmax(s / tau, 1), F.softmax(t / tau, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()
    want = (1 - lam) * F.cross_entropy(s, y) + lam * tau**2 * kl
    torch.testing.assert_close(hinton_kd_loss(s, t, y, tau=tau, lam=lam), want)
    torch.testing.assert_close(hinton_kd_loss(s, t, y, lam=0.0), F.cross_entropy(s, y))
    with pytest.raises(ValueError):
        hinton_kd_loss(s, t, y, tau=0.0)


def test_nst_input_errors() -> None:
    with pytest.raises(ValueError, match="batch size"):
        nst_loss([torch.randn(2, 3, 4, 4)], [torch.randn(3, 3, 4, 4)])
    with pytest.raises(ValueError, match="at least one"):
        nst_loss([], [])
    with pytest.raises(ValueError, match="teacher feature maps"):
        nst_loss([torch.randn(2, 3, 4, 4)], [])


def test_teacher_files(tmp_path) -> None:
    from optuna_mfkd.distill.teacher import RESNET_ARCH, load_teacher, save_teacher
    from optuna_mfkd.nasbench201.network import build_network

    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_teacher(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        load_teacher(bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"arch_str": RESNET_ARCH, "num_classes": 10, "state_dict": {"x": torch.zeros(1)}}, wrong)
    with pytest.raises(ValueError, match="do not match"):
        load_teacher(wrong)
    torch.manual_seed(0)
    net = build_network(RESNET_ARCH, 4)
    path = save_teacher(net, tmp_path / "t.pth")
    back = load_teacher(path)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(back(x), net.eval()(x))
    assert not math.isnan(float(back(x).detach().sum()))
