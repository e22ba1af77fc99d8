"""Training losses for the low fidelity: cross-entropy, Hinton KD and NST.

Notation (one distilled layer, one sample):

    F_S   (C_S, H, W)  student feature map;  F_T (C_T, H, W) teacher feature map
    S     (C_S, HW)    rows f_S^i / ||f_S^i||_2 (each channel flattened over H*W, L2-normalised)
    T     (C_T, HW)    the same for the teacher
    k     polynomial kernel k(a, b) = (a.b + c)^d

NST (Huang and Wang 2017; MF-KD paper eq. 3-4) is the squared maximum mean discrepancy
between the two sets of normalised channel rows::

    MMD^2 = 1/C_T^2 sum_{i,i'} k(t_i, t_i') + 1/C_S^2 sum_{j,j'} k(s_j, s_j')
            - 2/(C_T C_S) sum_{i,j} k(t_i, s_j)

For c = 0, d = 2 it also equals ``|| S^T S / C_S - T^T T / C_T ||_F^2`` (an HW x HW form).
The channel-Gram form costs about (C_S + C_T)^2 HW per sample, the HW x HW form about
(C_S + C_T) HW^2; :func:`nst_loss` uses whichever is cheaper for each layer (at NB201's
shapes, C <= HW everywhere, that is the Gram form). The paper's subset approximation
(eq. 7-8) evaluates the same MMD^2 on a fixed subset of channels of each layer:
:func:`nst_loss_subset`, with subsets from :func:`random_channel_subsets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "ce_loss",
    "hinton_kd_loss",
    "TeacherTargets",
    "nst_loss",
    "nst_loss_from_targets",
    "nst_loss_subset",
    "nst_mmd2_per_sample",
    "random_channel_subsets",
    "teacher_targets",
]

#: Hinton KD defaults: temperature tau and weight lambda of the distillation term.
KD_TAU = 4.0
KD_LAMBDA = 0.9
#: NST kernel k(a, b) = (a.b + c)^d: the paper's polynomial kernel, c = 0, d = 2.
NST_C = 0.0
NST_DEGREE = 2
#: Weight beta of the NST term in ``CE + beta * MMD^2`` (the paper's 12.5).
NST_BETA = 12.5


def ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (the "logistic loss" of the paper)."""
    return F.cross_entropy(logits, target)


def hinton_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    tau: float = KD_TAU,
    lam: float = KD_LAMBDA,
) -> torch.Tensor:
    """Hinton distillation: ``(1 - lam) CE(y, s) + lam tau^2 KL(softmax(t/tau) || softmax(s/tau))``.

    The KL term is averaged over the batch. ``tau > 0`` and ``0 <= lam <= 1``.
    """
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau!r}.")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam!r}.")
    ce = F.cross_entropy(student_logits, target)
    log_s = F.log_softmax(student_logits / tau, dim=1)
    log_t = F.log_softmax(teacher_logits.detach().to(log_s.dtype) / tau, dim=1)
    kl = F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
    return (1.0 - lam) * ce + lam * tau * tau * kl


def _rows(feat: torch.Tensor) -> torch.Tensor:
    if feat.dim() != 4:
        raise ValueError(f"NST expects (B, C, H, W) feature maps, got shape {tuple(feat.shape)}.")
    return F.normalize(feat.float().flatten(2), dim=2)  # (B, C, HW)


def _mean_kernel(a: torch.Tensor, b: torch.Tensor, c: float, degree: int) -> torch.Tensor:
    """Per sample, mean over rows i of a and j of b of (a_i . b_j + c)^degree -> (B,)."""
    gram = torch.bmm(a, b.transpose(1, 2))
    if c != 0.0:
        gram = gram + c
    return gram.pow(degree).mean(dim=(1, 2))


@dataclass
class TeacherTargets:
    """What NST needs of one teacher layer: normalised rows T (B, C_T, HW) and the
    teacher-teacher term ``1/C_T^2 sum_{i,i'} k(t_i, t_i')`` per sample (B,)."""

    rows: torch.Tensor
    tt: torch.Tensor

    def to(self, device=None, dtype: torch.dtype | None = None) -> TeacherTargets:
        rows = self.rows.to(device=device) if dtype is None else self.rows.to(device=device, dtype=dtype)
        return TeacherTargets(rows, self.tt.to(device=device))


def teacher_targets(teacher_feats: Sequence[torch.Tensor], *, c: float = NST_C,
                    degree: int = NST_DEGREE) -> list[TeacherTargets]:
    """Precompute the teacher side of NST for each layer (no gradient)."""
    out = []
    with torch.no_grad():
        for ft in teacher_feats:
            t = _rows(ft).contiguous()
            out.append(TeacherTargets(t, _mean_kernel(t, t, c, degree)))
    return out


class _GradInInputLayout(torch.autograd.Function):
    """Identity whose backward returns the gradient in the input's memory format.

    The NST gradient comes out of ``bmm`` in NCHW order; a channels_last network would then
    add it to channels_last gradients and run its BatchNorm/conv backward on the slow mixed
    layout. Converting here costs one copy per distilled layer.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        if ctx.channels_last:
            return g.contiguous(memory_format=torch.channels_last)
        return g.contiguous()


def keep_grad_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself, but gradients flowing back through it take ``x``'s memory format."""
    return _GradInInputLayout.apply(x) if x.requires_grad else x


def _student_terms(fs: torch.Tensor, target: TeacherTargets, c: float, degree: int) -> torch.Tensor:
    """Per-sample MMD^2 from a raw student map and teacher targets (channel-Gram form).

    Normalisation is applied to the Gram matrices instead of the (C, HW) rows:
    k(s_i, s_j) = (G_ij / (n_i n_j) + c)^d with G = F_S F_S^T and n_i = sqrt(G_ii).
    """
    if fs.dim() != 4:
        raise ValueError(f"NST expects (B, C, H, W) feature maps, got shape {tuple(fs.shape)}.")
    t = target.rows.to(device=fs.device, dtype=torch.float32)
    if fs.shape[0] != t.shape[0] or fs.shape[2] * fs.shape[3] != t.shape[2]:
        raise ValueError(
            "student and teacher feature maps must share batch size and H, W; got "
            f"{tuple(fs.shape)} and teacher rows {tuple(t.shape)}."
        )
    s = keep_grad_layout(fs).float().flatten(2)  # (B, C_S, HW), any memory layout
    gram = torch.bmm(s, s.transpose(1, 2))  # (B, C_S, C_S)
    inv = gram.diagonal(dim1=1, dim2=2).clamp_min(1e-24).rsqrt()  # 1 / n_i
    ss = gram * inv.unsqueeze(2) * inv.unsqueeze(1)
    st = torch.bmm(s, t.transpose(1, 2)) * inv.unsqueeze(2)  # (B, C_S, C_T)
    if c != 0.0:
        ss, st = ss + c, st + c
    return target.tt.to(fs.device) + ss.pow(degree).mean(dim=(1, 2)) - 2.0 * st.pow(degree).mean(dim=(1, 2))


def nst_loss_from_targets(student_feats: Sequence[torch.Tensor], targets: Sequence[TeacherTargets],
                          *, c: float = NST_C, degree: int = NST_DEGREE) -> torch.Tensor:
    """:func:`nst_loss` with the teacher side precomputed by :func:`teacher_targets`."""
    if len(student_feats) != len(targets):
        raise ValueError(f"got {len(student_feats)} student feature maps and {len(targets)} teacher targets.")
    if not targets:
        raise ValueError("nst_loss needs at least one distilled layer.")
    total = None
    for fs, tg in zip(student_feats, targets, strict=True):
        term = _student_terms(fs, tg, c, degree).mean()
        total = term if total is None else total + term
    return total


def nst_mmd2_per_sample(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    c: float = NST_C,
    degree: int = NST_DEGREE,
    form: str = "auto",
) -> torch.Tensor:
    """MMD^2 of one layer for every sample, shape (B,). See the module docstring.

    ``form``: ``"gram"`` (channel Gram matrices, any kernel), ``"spatial"`` (the HW x HW form,
    only for c = 0, degree = 2), or ``"auto"`` (the cheaper valid one). The teacher enters
    without gradient.
    """
    if student.shape[0] != teacher.shape[0] or student.shape[2:] != teacher.shape[2:]:
        raise ValueError(
            "student and teacher feature maps must share batch size and H, W; got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}."
        )
    if int(degree) != degree or degree < 1:
        raise ValueError(f"degree must be a positive integer, got {degree!r}.")
    degree = int(degree)
    t = _rows(teacher.detach())
    cs, ct, hw = student.shape[1], t.shape[1], t.shape[2]
    exact_spatial = c == 0.0 and degree == 2
    if form == "auto":
        gram_cost = (cs * cs + ct * ct + cs * ct) * hw
        spatial_cost = (cs + ct + 1) * hw * hw
        form = "spatial" if exact_spatial and spatial_cost < gram_cost else "gram"
    if form == "spatial":
        if not exact_spatial:
            raise ValueError("the spatial NST form holds only for c = 0, degree = 2.")
        s = _rows(student)
        diff = torch.bmm(s.transpose(1, 2), s) / cs - torch.bmm(t.transpose(1, 2), t) / ct
        return diff.pow(2).sum(dim=(1, 2))
    if form != "gram":
        raise ValueError(f"form must be 'auto', 'gram' or 'spatial', got {form!r}.")
    return _student_terms(student, TeacherTargets(t.contiguous(), _mean_kernel(t, t, c, degree)), c, degree)


def nst_loss(
    student_feats: Sequence[torch.Tensor],
    teacher_feats: Sequence[torch.Tensor],
    *,
    c: float = NST_C,
    degree: int = NST_DEGREE,
) -> torch.Tensor:
    """NST distillation term: sum over layers of the batch mean of MMD^2 (eq. 4), without beta.

    Args:
        student_feats: one (B, C_S, H, W) tensor per distilled layer.
        teacher_feats: the teacher's (B, C_T, H, W) tensors for the same layers (no gradient
            flows into them).
        c, degree: polynomial kernel ``(a.b + c)^degree`` (paper: c = 0, degree = 2).

    The teacher-teacher term is included, so the value is the MMD^2 itself (zero when the
    student's normalised channel rows equal the teacher's).
    """
    if len(student_feats) != len(teacher_feats):
        raise ValueError(
            f"got {len(student_feats)} student and {len(teacher_feats)} teacher feature maps."
        )
    if not student_feats:
        raise ValueError("nst_loss needs at least one distilled layer.")
    total = None
    for fs, ft in zip(student_feats, teacher_feats, strict=True):
        term = nst_mmd2_per_sample(fs, ft, c=c, degree=degree).mean()
        total = term if total is None else total + term
    return total


def random_channel_subsets(
    channels: Sequence[int], fraction: float, *, seed: int = 0
) -> list[torch.Tensor]:
    """A fixed random subset of ``ceil(fraction * C)`` channel indices per layer (sorted)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}.")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for ch in channels:
        k = max(1, int(-(-fraction * ch // 1)))
        out.append(torch.randperm(int(ch), generator=gen)[:k].sort().values)
    return out


def nst_loss_subset(
    student_feats: Sequence[torch.Tensor],
    teacher_feats: Sequence[torch.Tensor],
    student_channels: Sequence[torch.Tensor | None],
    teacher_channels: Sequence[torch.Tensor | None] | None = None,
    *,
    c: float = NST_C,
    degree: int = NST_DEGREE,
) -> torch.Tensor:
    """The subset approximation of NST (paper eq. 7-8).

    The MMD^2 of :func:`nst_loss` evaluated on channels ``student_channels[l]`` of the
    student's layer ``l`` and ``teacher_channels[l]`` of the teacher's (``None`` = all
    channels; ``teacher_channels=None`` reuses the student's subsets). Pass only the layers
    to distil to restrict the layer set as well.
    """
    if teacher_channels is None:
        teacher_channels = student_channels
    if not (len(student_feats) == len(teacher_feats) == len(student_channels) == len(teacher_channels)):
        raise ValueError("feature lists and channel subsets must have one entry per layer.")
    fs = [f if idx is None else keep_grad_layout(f).index_select(1, idx.to(f.device))
          for f, idx in zip(student_feats, student_channels, strict=True)]
    ft = [f if idx is None else f.index_select(1, idx.to(f.device)) for f, idx in zip(teacher_feats, teacher_channels, strict=True)]
    return nst_loss(fs, ft, c=c, degree=degree)
