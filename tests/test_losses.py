"""Every registered distillation loss: contract, every model pair, identity minimum, golden values.

Parametrized over ``LOSSES.names()``: a new loss file is tested without touching this file, and
``test_golden`` fails until its paper's formula is written out below. Golden formulas are plain
torch, independent of ``kdbench.losses``; where a method has trainable parts (regressors,
connectors, embeddings) the formula uses the loss's own modules as black-box maps.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses import LOSSES, LossContext, NotApplicable
from kdbench.matrix.profiles import PROFILES
from kdbench.models import MODELS, build_model
from kdbench.run.taps import Tapper, shapes

NUM_CLASSES = 10
NUM_TRAIN = 64
INPUT_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28)}
DIGITS = INPUT_SHAPES["digits"]
CIFAR = (3, 32, 32)  # cifar10, cifar100, and the default for image folders at this size
# every pair of every profile, plus every ordered pair of the digits CNNs of the registry
PAIRS = sorted(
    {
        (t, s, INPUT_SHAPES.get(p.dataset, CIFAR))
        for p in map(PROFILES.get, PROFILES.names())
        for t, s in p.pairs
    }
    | {(t, s, DIGITS) for t in MODELS.names("cnn_*") for s in MODELS.names("cnn_*")}
)


def make(name: str, temperature: float | None = None, **options):
    return LOSSES.get(name)(temperature=temperature, **options)


def context(
    student: dict,
    teacher: dict,
    teacher_model: nn.Module | None = None,
    student_model: nn.Module | None = None,
) -> LossContext:
    targets = torch.arange(NUM_TRAIN) % NUM_CLASSES
    return LossContext(
        shapes(student),
        shapes(teacher),
        NUM_CLASSES,
        NUM_TRAIN,
        240,
        teacher_model,
        targets,
        student_model,
    )


def objective(loss, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
    """The distillation term, plus the initialisation-stage objective where there is one."""
    value = loss(student, teacher, target)
    if loss.pretrain_epochs(240):
        value = value + loss.pretrain_loss(student, teacher, target)
    return value


# ------------------------------------------------------------------ every pair of the registry
_models: dict[tuple, nn.Module] = {}


def model(name: str, input_shape, seed: int) -> nn.Module:
    key = (name, input_shape, seed)
    if key not in _models:
        torch.manual_seed(seed)
        _models[key] = build_model(name, NUM_CLASSES, input_shape)
    return _models[key]


_teacher_taps: dict[tuple, dict] = {}


def teacher_taps(name: str, input_shape, taps: tuple, x: torch.Tensor) -> dict:
    """The teacher's taps on the test batch, computed once per teacher and tap set."""
    key = (name, input_shape, taps, len(x))
    if key not in _teacher_taps:
        teacher = model(name, input_shape, 0).eval()
        with Tapper(teacher, taps) as tapper, torch.no_grad():
            _teacher_taps[key] = tapper(x)
    return _teacher_taps[key]


def float_tensors(value) -> list[torch.Tensor]:
    items = value if isinstance(value, list) else [value]
    return [t for t in items if t.is_floating_point()]


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize(
    "teacher_name,student_name,input_shape",
    PAIRS,
    ids=[f"{t}>{s}-{'x'.join(map(str, shape))}" for t, s, shape in PAIRS],
)
def test_pair(name, teacher_name, student_name, input_shape):
    """Finite scalar on a tiny batch; gradients reach the student's taps and the loss's params."""
    loss = make(name)
    student = model(student_name, input_shape, 1).train()
    batch = 3  # RKD's relations need three samples
    views = 2 if "strong_view" in loss.dataset_options else 1  # MLKD trains on two views
    torch.manual_seed(1)
    x = torch.randn(batch, *input_shape).repeat(views, 1, 1, 1)
    target = torch.randint(NUM_CLASSES, (batch,)).repeat(views)
    index = torch.randperm(NUM_TRAIN)[:batch].repeat(views)
    try:
        t_out = teacher_taps(teacher_name, input_shape, loss.taps, x)
        with Tapper(student, loss.taps) as s_tap:
            student.zero_grad(set_to_none=True)
            s_out = {**s_tap(x), "index": index}
        loss.setup(context(s_out, t_out, model(teacher_name, input_shape, 0), student))
        tapped = {tap: tensors for tap in loss.taps if (tensors := float_tensors(s_out[tap]))}
        for tensors in tapped.values():
            for t in tensors:
                t.retain_grad()
        value = objective(loss, s_out, t_out, target)  # CAT-KD, SDD check their map here
    except NotApplicable as reason:
        assert str(reason)
        pytest.skip(str(reason))
    assert value.dim() == 0 and torch.isfinite(value)
    if not loss.needs_teacher:
        return
    value.backward()
    for tap, tensors in tapped.items():
        grads = [t.grad for t in tensors if t.grad is not None]
        assert grads, f"no gradient reaches the student's {tap!r}"
        assert all(torch.isfinite(g).all() for g in grads)
    for pname, p in loss.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no gradient for {pname}"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


# --------------------------------------------------------------------------- identity minimum
ZERO_AT_IDENTITY = [
    "ce",
    "kd",
    "mse_logits",
    "dkd",
    "dkd_ls",
    "kd_ls",
    "dist",
    "ctkd",
    "at",
    "sp",
    "rkd",
    "pkt",
    "nst",
    "fsp",
    "kdsvd",
]


def features(seed: int, batch: int = 6, channels=(4, 6, 8), sizes=(8, 8, 4)) -> dict:
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(batch, c, s, s, generator=g) for c, s in zip(channels, sizes)]
    return {
        "logits": torch.randn(batch, 5, generator=g) * 3,
        "feats": feats,
        "preacts": [f.clone() for f in feats],
        "feat:-1": feats[-1],
        "embed": torch.randn(batch, 16, generator=g),
        "index": torch.arange(batch) * 3,
    }


@pytest.mark.parametrize("name", [n for n in ZERO_AT_IDENTITY if n in LOSSES])
def test_zero_when_student_equals_teacher(name):
    out = features(0)
    loss = make(name)
    loss.setup(context(out, out))
    target = torch.arange(6) % 5
    teacher = {k: (v if isinstance(v, list) else v.clone()) for k, v in out.items()}
    value = objective(loss, out, teacher, target)
    assert abs(value.item()) < 1e-4


# ------------------------------------------------------------------------------- golden values
def kl(p_t: torch.Tensor, p_s: torch.Tensor) -> torch.Tensor:
    return (p_t * (p_t.log() - p_s.log())).sum(1).mean()


def zscore(x: torch.Tensor) -> torch.Tensor:
    mu = x.mean(1, keepdim=True)
    sd = ((x - mu) ** 2).sum(1, keepdim=True).div(x.shape[1] - 1).sqrt()
    return (x - mu) / (sd + 1e-7)


def pool(a: torch.Tensor, b: torch.Tensor):
    ha, hb = a.shape[-1], b.shape[-1]
    if ha > hb:
        return F.avg_pool2d(a, ha // hb), b
    return a, F.avg_pool2d(b, hb // ha) if hb > ha else b


def smooth_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = (a - b).abs()
    return torch.where(d < 1, 0.5 * d**2, d - 0.5).mean()


def run(
    name: str,
    student: dict,
    teacher: dict,
    target: torch.Tensor,
    teacher_model=None,
    stage: str = "forward",
    **options,
) -> tuple:
    torch.manual_seed(0)
    loss = make(name, **options)
    loss.setup(context(student, teacher, teacher_model))
    fn = loss.pretrain_loss if stage == "pretrain" else loss
    return fn(student, teacher, target), loss


S, T = features(1), features(2, channels=(8, 12, 16), sizes=(8, 4, 2))
T_SAME = features(2)  # same channels and sizes as S
Y = torch.tensor([0, 1, 2, 3, 4, 1])


def g_kd():
    s, t = S["logits"], T["logits"]
    value, _ = run("kd", S, T, Y)
    return value, 16 * kl(F.softmax(t / 4, 1), F.softmax(s / 4, 1))


def g_mse_logits():
    value, _ = run("mse_logits", S, T, Y)
    return value, ((S["logits"] - T["logits"]) ** 2).sum(1).mean()


def g_ce():
    value, _ = run("ce", S, T, Y)
    return value, torch.tensor(0.0)


def dkd_formula(s, t, y, T, alpha, beta):
    p_s, p_t = F.softmax(s / T, 1), F.softmax(t / T, 1)
    gt_s, gt_t = p_s[range(len(y)), y], p_t[range(len(y)), y]
    b_s, b_t = torch.stack([gt_s, 1 - gt_s], 1), torch.stack([gt_t, 1 - gt_t], 1)
    keep = torch.ones_like(s, dtype=torch.bool)
    keep[range(len(y)), y] = False
    rest_s, rest_t = s[keep].view(len(y), -1), t[keep].view(len(y), -1)
    nckd = kl(F.softmax(rest_t / T, 1), F.softmax(rest_s / T, 1))
    return T * T * (alpha * kl(b_t, b_s) + beta * nckd)


def g_dkd():
    value, _ = run("dkd", S, T, Y)
    return value, dkd_formula(S["logits"], T["logits"], Y, 4.0, 1.0, 8.0)


def g_dkd_ls():
    value, _ = run("dkd_ls", S, T, Y)
    return value, dkd_formula(zscore(S["logits"]), zscore(T["logits"]), Y, 4.0, 9.0, 81.0)


def g_kd_ls():
    value, _ = run("kd_ls", S, T, Y)
    s, t = zscore(S["logits"]), zscore(T["logits"])
    return value, 9 * 4 * kl(F.softmax(t / 2, 1), F.softmax(s / 2, 1))


def g_dist():
    value, _ = run("dist", S, T, Y)
    p_s, p_t = F.softmax(S["logits"] / 4, 1), F.softmax(T["logits"] / 4, 1)

    def corr(a, b):
        return torch.stack([torch.corrcoef(torch.stack([x, z]))[0, 1] for x, z in zip(a, b)])

    return value, 16 * ((1 - corr(p_s, p_t).mean()) + (1 - corr(p_s.t(), p_t.t()).mean()))


def g_ctkd():
    value, loss = run("ctkd", S, T, Y)
    assert abs(loss.theta.item() - 1.0) < 1e-6  # the repo's initial θ
    tau = 1 + 20 * torch.sigmoid(torch.tensor(1.0))
    s, t = S["logits"], T["logits"]
    return value, tau**2 * kl(F.softmax(t / tau, 1), F.softmax(s / tau, 1))


def g_fitnet():
    value, loss = run("fitnet", S, T, Y)
    return value, 100 * ((loss.regressor(S["feats"][2]) - T["feats"][2]) ** 2).mean()


def attention_maps(a, b):
    a, b = pool(a, b)
    q_a, q_b = (a**2).mean(1).flatten(1), (b**2).mean(1).flatten(1)
    return q_a / q_a.norm(dim=1, keepdim=True), q_b / q_b.norm(dim=1, keepdim=True)


def g_at():
    value, _ = run("at", S, T, Y)
    pairs = [attention_maps(a, b) for a, b in zip(S["feats"][1:], T["feats"][1:])]
    return value, 1000 * sum(((qa - qb) ** 2).mean() for qa, qb in pairs)


def g_at_paper():
    value, _ = run("at", S, T, Y, paper=1.0)
    pairs = [attention_maps(a, b) for a, b in zip(S["feats"][1:], T["feats"][1:])]
    return value, 1000 / 2 * sum(
        (qa - qb).pow(2).sum(1).sqrt().sum() / (qa.shape[1] * len(qa)) for qa, qb in pairs
    )


def g_sp():
    value, _ = run("sp", S, T, Y)

    def gram(f):
        f = f.reshape(len(f), -1)
        g = f @ f.t()
        return g / g.norm(dim=1, keepdim=True)

    return value, 3000 * ((gram(S["feat:-1"]) - gram(T["feat:-1"])) ** 2).sum() / 36


def g_cc():
    value, loss = run("cc", S, T, Y)
    e_s, e_t = loss.embed_s(S["embed"]), loss.embed_t(T["embed"])
    d = (e_s - e_t).abs()
    return value, 0.02 * sum((d[i] * d[i + 1]).sum() for i in range(5)) / 5


def g_cc_paper():
    value, loss = run("cc", S, T, Y, paper=1.0, order=30)  # Taylor series → the exact kernel

    def rbf(e):
        e = e / e.norm(dim=1, keepdim=True)
        return torch.exp(-0.4 * torch.cdist(e, e) ** 2)

    e_s, e_t = loss.embed_s(S["embed"]), loss.embed_t(T["embed"])
    return value, 0.02 * ((rbf(e_s) - rbf(e_t)) ** 2).sum() / 36


def g_vid():
    value, loss = run("vid", S, T, Y)
    total = 0
    for a, b, reg, alpha in zip(S["feats"][1:], T["feats"][1:], loss.regressors, loss.log_scales):
        a, b = pool(a, b)
        var = (torch.log1p(torch.exp(alpha)) + 1e-5)[None, :, None, None]
        total = total + (0.5 * ((reg(a) - b) ** 2 / var + torch.log(var))).mean()
    assert abs(math.log1p(math.exp(loss.log_scales[0][0].item())) + 1e-5 - 5.0) < 1e-4
    return value, total


def g_rkd():
    value, _ = run("rkd", S, T, Y)

    def dist(e):
        d = torch.cdist(e, e)
        return d / d[~torch.eye(len(e), dtype=torch.bool)].mean()

    def angle(e):
        v = e[None, :, :] - e[:, None, :]  # v[i, j] = e_j − e_i
        v = v / v.norm(dim=2, keepdim=True).clamp_min(1e-12)
        return torch.einsum("ijd,ikd->ijk", v, v)

    e_s, e_t = S["embed"], T["embed"]
    return value, 25 * smooth_l1(dist(e_s), dist(e_t)) + 50 * smooth_l1(angle(e_s), angle(e_t))


def g_pkt():
    value, _ = run("pkt", S, T, Y)

    def prob(e):
        e = e / (e.norm(dim=1, keepdim=True) + 1e-7)
        c = (e @ e.t() + 1) / 2
        return c / c.sum(1, keepdim=True)

    p_s, p_t = prob(S["embed"]), prob(T["embed"])
    return value, 30000 * (p_t * torch.log((p_t + 1e-7) / (p_s + 1e-7))).mean()


def ab_formula(loss):
    total, n = 0, 2
    for j, (a, b, c) in enumerate(zip(S["preacts"][1:], T["preacts"][1:], loss.connectors)):
        s = c(a)
        hinge = (s + 1) ** 2 * ((s > -1) & (b <= 0)) + (s - 1) ** 2 * ((s <= 1) & (b > 0))
        total = total + 2.0 ** (j - n + 1) * hinge.sum()
    return total / 6 * 3 / 1000


def g_ab():
    value, loss = run("ab", S, T, Y, stage="pretrain")
    main, _ = run("ab", S, T, Y)
    assert main.item() == 0  # CE alone after the initialisation stage, as RepDistiller
    assert loss.pretrain_epochs(240) == 30
    return value, ab_formula(loss)


def g_ab_main_stage():
    value, loss = run("ab", S, T, Y, main_stage=1.0)
    return value, ab_formula(loss)


def g_ft():
    value, loss = run("ft", S, T, Y)

    def factor(f):
        q = (f**2).mean(1).flatten(1)
        return q / q.norm(dim=1, keepdim=True)

    f_s, f_t = pool(loss.translator(S["feat:-1"]), loss.encoder(T["feat:-1"]))
    return value, 200 * (factor(f_s) - factor(f_t)).abs().mean()


def g_ft_pretrain():
    value, loss = run("ft", S, T, Y, stage="pretrain")
    f = T["feat:-1"]
    return value, ((loss.decoder(loss.encoder(f)) - f) ** 2).mean()


def g_fsp():
    value, _ = run("fsp", S, T_SAME, Y, stage="pretrain")

    def fsp(feats):
        out = []
        for bottom, top in itertools.pairwise(feats):
            bottom, top = pool(bottom, top)
            hw = bottom.shape[2] * bottom.shape[3]
            out.append(torch.einsum("bihw,bjhw->bji", bottom, top) / hw)
        return out

    return value, sum(((a - b) ** 2).mean() for a, b in zip(fsp(S["feats"]), fsp(T_SAME["feats"])))


def g_nst():
    value, _ = run("nst", S, T, Y)
    total = 0
    for a, b in zip(S["feats"][1:], T["feats"][1:]):
        a, b = pool(a, b)
        a = a.flatten(2) / a.flatten(2).norm(dim=2, keepdim=True)
        b = b.flatten(2) / b.flatten(2).norm(dim=2, keepdim=True)

        def k(x, z):
            return torch.einsum("bid,bjd->bij", x, z).pow(2).mean()

        total = total + k(b, b) + k(a, a) - 2 * k(a, b)
    return value, 50 * total


def g_kdsvd():
    value, _ = run("kdsvd", S, T_SAME, Y)
    total, prev = 0, None
    for a, b in zip(S["feats"][1:], T_SAME["feats"][1:]):
        stage = []
        for x_s, x_t in zip(a, b):  # per sample
            _, sv_t, v_t = torch.svd(x_t.flatten(1).t())
            _, _, v_s = torch.svd(x_s.flatten(1).t())
            w = sv_t[:1] / sv_t[:1].norm()
            v_t = v_t[:, :1] / v_t[:, :1].norm(dim=0)
            v_s = v_s[:, :4] / v_s[:, :4].norm(dim=0)
            cos = v_s.t() @ v_t  # (4, 1)
            i = cos[:, 0].abs().argmax()
            stage.append((v_s[:, i : i + 1] * cos[i, 0].sign() * w, v_t * w))
        if prev is not None:
            for (vs, vt), (ps, pt) in zip(stage, prev):
                rbf_s = torch.exp(-((vs[:, None] - ps[None]) ** 2) / 8)
                rbf_t = torch.exp(-((vt[:, None] - pt[None]) ** 2) / 8)
                total = total + ((rbf_s - rbf_t) ** 2).sum()
        prev = stage
    return value, total / 6


def g_crd():
    torch.manual_seed(0)
    loss = make("crd")
    loss.setup(context(S, T))
    assert loss.k == NUM_TRAIN - NUM_TRAIN // NUM_CLASSES - 1  # all other-class samples
    mem_s, mem_t = loss.memory_s.clone(), loss.memory_t.clone()
    torch.manual_seed(5)
    idx = loss.sample(S["index"], Y)
    torch.manual_seed(5)
    value = loss(S, T, Y)
    labels = torch.arange(NUM_TRAIN) % NUM_CLASSES
    assert (idx[:, 0] == S["index"]).all() and (labels[idx[:, 1:]] != Y[:, None]).all()
    v_s = F.normalize(loss.embed_s(S["embed"]), dim=1)
    v_t = F.normalize(loss.embed_t(T["embed"]), dim=1)
    out_s = torch.exp(torch.einsum("bkd,bd->bk", mem_t[idx], v_s) / 0.07)
    out_t = torch.exp(torch.einsum("bkd,bd->bk", mem_s[idx], v_t) / 0.07)
    k, n = idx.shape[1] - 1, NUM_TRAIN

    def nce(out):
        out = out / (out.mean() * n)
        pos, neg = out[:, 0], out[:, 1:]
        return (
            -(torch.log(pos / (pos + k / n)).sum() + torch.log((k / n) / (neg + k / n)).sum()) / 6
        )

    updated = F.normalize(0.5 * mem_s[S["index"]] + 0.5 * v_s.detach(), dim=1)
    assert torch.allclose(loss.memory_s[S["index"]], updated, atol=1e-6)
    return value, 0.8 * (nce(out_s) + nce(out_t))


def g_ofd():
    value, loss = run("ofd", S, T, Y)
    total, n = 0, 2
    for j, (a, b, c) in enumerate(zip(S["preacts"][1:], T["preacts"][1:], loss.connectors)):
        mu, sd = b.mean((0, 2, 3)), b.std((0, 2, 3))
        cdf = 0.5 * (1 + torch.erf(-mu / sd / math.sqrt(2)))
        gauss = torch.exp(-((mu / sd) ** 2) / 2) / math.sqrt(2 * math.pi)
        m = torch.where(cdf > 0.001, mu - sd * gauss / cdf, -3 * sd)[None, :, None, None]
        s = c(a)
        t = (
            F.interpolate(b, s.shape[-2:], mode="nearest")
            if b.shape[-1] < s.shape[-1]
            else pool(s, b)[1]
        )
        term = (
            (s - m) ** 2 * ((s > m) & (t <= m))
            + (s - t) ** 2 * ((s > t) & (t > m) & (t <= 0))
            + (s - t) ** 2 * (t > 0)
        )
        total = total + term.sum() / len(s) / 2 ** (n - j - 1)
    return value, 0.001 * total


def g_reviewkd():
    value, loss = run("reviewkd", S, T, Y)
    xs = [S["feats"][2], S["feats"][1]]
    ys = [T["embed"][:, :, None, None], T["preacts"][2], T["preacts"][1]]
    out, res = loss.abfs[0](S["embed"][:, :, None, None], None, (1, 1))
    outs = [out]
    for x, abf, y in zip(xs, loss.abfs[1:], ys[1:]):
        out, res = abf(x, res, y.shape[-2:])
        outs.append(out)

    def hcl(a, b):  # MSE at full size, then at each pooled size below it, weights 1, ½, ¼, …
        sizes = [a.shape[-1]] + [size for size in (4, 2, 1) if size < a.shape[-1]]
        errors = [
            ((F.adaptive_avg_pool2d(a, size) - F.adaptive_avg_pool2d(b, size)) ** 2).mean()
            for size in sizes
        ]
        weights = [0.5**i for i in range(len(sizes))]
        return sum(w * e for w, e in zip(weights, errors)) / sum(weights)

    return value, sum(hcl(o, y) for o, y in zip(outs, ys))


def g_ickd():
    value, loss = run("ickd", S, T, Y)

    def icc(f):
        f = f.flatten(2)
        g = torch.einsum("bid,bjd->bij", f, f)
        return g / g.norm(dim=2, keepdim=True)

    g_s, g_t = icc(loss.embed(S["feat:-1"])), icc(T["feat:-1"])
    return value, 2.5 * ((g_s - g_t) ** 2).sum() / (g_s.shape[1] * 6)


class _Teacher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 5)

    def classifier_module(self) -> nn.Module:
        return self.fc


def g_srd():
    torch.manual_seed(3)
    teacher = _Teacher()
    value, loss = run("srd", S, T, Y, teacher_model=teacher)
    assert not any(p is teacher.fc.weight for p in loss.parameters())
    h = loss.connector(S["embed"])
    return value, ((h - T["embed"]) ** 2).mean() + ((teacher.fc(h) - T["logits"]) ** 2).mean()


def g_mlkd():
    """Three images, weak views then strong views (S's six rows as two views of three)."""
    two = {"logits": S["logits"], "index": torch.arange(3).repeat(2)}
    value, _ = run("mlkd", two, T, Y)
    (sw, ss), (tw, ts) = S["logits"].chunk(2), T["logits"].chunk(2)
    conf, mass = F.softmax(tw, 1).max(1).values, F.softmax(tw, 1).sum(0)
    frac = (conf <= conf.median()).float().mean()  # 3 samples: the median is the middle one
    cfrac = (mass <= mass.quantile(0.5)).float().mean()

    def levels(s, t, T):
        p, q = F.softmax(s / T, 1), F.softmax(t / T, 1)
        return (
            T * T * kl(q, p),
            ((q @ q.T - p @ p.T) ** 2).sum() / 3,
            ((q.T @ q - p.T @ p) ** 2).sum() / 5,
        )

    weak = sum(
        frac * (i + b) + cfrac * c for i, b, c in (levels(sw, tw, T) for T in (4, 3, 5, 2, 6))
    )
    strong = sum(
        levels(s, t, T)[0]
        for s, t, T in ((ss, ts, 4), (ss, ts, 3), (ss, ts, 5), (sw, tw, 2), (sw, tw, 6))
    )
    return value, weak + strong


def g_ttm():
    value, _ = run("ttm", S, T, Y)
    p_t = F.softmax(T["logits"], 1) ** 0.1
    return value, 45 * kl(p_t / p_t.sum(1, keepdim=True), F.softmax(S["logits"], 1))


def g_wttm():
    value, _ = run("wttm", S, T, Y)
    p_t = F.softmax(T["logits"], 1) ** 0.2
    q_t, q_s = p_t / p_t.sum(1, keepdim=True), F.softmax(S["logits"], 1)
    return value, 4 * (p_t.sum(1) * (q_t * (q_t.log() - q_s.log())).sum(1)).mean()


def g_nkd():
    value, _ = run("nkd", S, T, Y)
    s, t, rows = S["logits"], T["logits"], range(len(Y))
    keep = torch.ones_like(s, dtype=torch.bool)
    keep[rows, Y] = False
    rest_s, rest_t = s[keep].view(len(Y), -1), t[keep].view(len(Y), -1)
    cross = (F.softmax(rest_t / 3, 1) * F.log_softmax(rest_s / 3, 1)).sum(1).mean()
    target_term = -(F.softmax(t, 1)[rows, Y] * F.log_softmax(s, 1)[rows, Y]).mean()
    return value, target_term - 3.5 * 9 * cross


def g_rld():
    value, _ = run("rld", S, T, Y)
    s, t, rows = S["logits"], T["logits"], range(len(Y))
    p_s, p_t = F.softmax(s / 4, 1), F.softmax(t / 4, 1)
    top = t.argmax(1)
    b_s = torch.stack([p_s[rows, Y], 1 - p_s[rows, Y]], 1)
    b_t = torch.stack([p_t[rows, top], 1 - p_t[rows, top]], 1)
    below = t < t[rows, Y][:, None]  # classes the teacher ranks under the true class
    mcd = torch.stack(
        [
            kl(F.softmax(t[i, below[i]][None] / 4, 1), F.softmax(s[i, below[i]][None] / 4, 1))
            if below[i].any()
            else torch.tensor(0.0)
            for i in rows
        ]
    ).mean()
    return value, 16 * (kl(b_t, b_s) + 8 * mcd)


# CAT-KD's and SDD's golden values are the authors' code transcribed in tests/test_losses_cam.py
# (they need the networks' classifiers, which features() here does not have).
from test_losses_cam import golden_catkd as g_catkd  # noqa: E402, F401
from test_losses_cam import golden_sdd as g_sdd  # noqa: E402, F401

GOLDEN = {name[2:]: fn for name, fn in dict(globals()).items() if name.startswith("g_")}


@pytest.mark.parametrize("name", LOSSES.names())
def test_golden_value(name):
    assert name in GOLDEN, f"no golden formula for loss {name!r}: add g_{name} to this file"
    value, expected = GOLDEN[name]()
    assert value.dim() == 0
    torch.testing.assert_close(value, expected.to(value.dtype), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", [n for n in GOLDEN if n not in LOSSES])
def test_golden_variant(variant):
    value, expected = GOLDEN[variant]()
    torch.testing.assert_close(value, expected.to(value.dtype), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------- schedules and options
def test_dkd_warmup_scales_with_the_run():
    loss = make("dkd")
    loss.set_progress(0, 240)
    assert loss.warmup_weight == pytest.approx(1 / 20)
    loss.set_progress(19, 240)
    assert loss.warmup_weight == 1.0
    loss.set_progress(0, 24)  # 20/240 of 24 epochs = 2 epochs
    assert loss.warmup_weight == pytest.approx(0.5)
    loss.set_progress(0.99, 24)  # per epoch, as mdistiller: the same weight all epoch long
    assert loss.warmup_weight == pytest.approx(0.5)


@pytest.mark.parametrize("epochs", [240, 15, 8])
def test_ctkd_curriculum_spans_10_of_240_of_any_run(epochs):
    """λ goes 0 → −1 along a cosine over the first 10/240 of the run's steps (a 15-epoch run
    has it over its first 0.625 epochs, no longer all at −1 from the first step)."""
    loss = make("ctkd")
    span = 10 / 240 * epochs
    for fraction, lam in ((0.0, 0.0), (0.5, -0.5), (1.0, -1.0), (3.0, -1.0)):
        loss.set_progress(fraction * span, epochs)
        assert loss.lam == pytest.approx(lam)


def test_ctkd_curriculum_reverses_the_temperature_gradient():
    loss = make("ctkd")
    loss.set_progress(100, 240)
    assert loss.lam == -1.0
    value = loss(S, T, Y)
    value.backward()
    plain = torch.tensor(1.0, requires_grad=True)
    tau = 1 + 20 * torch.sigmoid(plain)
    s, t = S["logits"], T["logits"]
    (tau**2 * kl(F.softmax(t / tau, 1), F.softmax(s / tau, 1))).backward()
    torch.testing.assert_close(loss.theta.grad, -plain.grad)


def test_ctkd_starts_at_the_spec_temperature():
    assert make("ctkd", temperature=4.0).current_temperature().item() == pytest.approx(4.0)


def test_fsp_is_not_applicable_across_channel_counts():
    with pytest.raises(NotApplicable, match="channels"):
        make("fsp").setup(context(S, T))


def test_pretrain_stages_scale_with_the_run():
    assert {n: make(n).pretrain_epochs(240) for n in ("ab", "ft", "fsp")} == {
        "ab": 30,
        "ft": 30,
        "fsp": 30,
    }
    assert make("ab").pretrain_epochs(8) == 1


def test_every_loss_names_its_paper():
    for name in LOSSES.names():
        paper = LOSSES.get(name).paper()
        assert len(paper) > 20, name


def test_crd_draws_distinct_other_class_negatives_uniformly():
    from kdbench.losses.crd import CRD

    targets = torch.arange(400) % 4  # 300 other-class samples a class: K = 20 is drawn, not top-K
    loss = CRD(nce_k=20)
    ctx = LossContext(
        student_shapes={"embed": (1, 8)},
        teacher_shapes={"embed": (1, 8)},
        num_classes=4,
        num_train=400,
        epochs=1,
        train_targets=targets,
    )
    loss.setup(ctx)
    torch.manual_seed(0)
    index, target = torch.arange(8), targets[:8]
    hits = torch.zeros(400)
    for _ in range(300):
        idx = loss.sample(index, target)
        assert idx.shape == (8, 21) and torch.equal(idx[:, 0], index)
        negatives = idx[:, 1:]
        assert (targets[negatives] != target[:, None]).all()
        assert all(len(set(row.tolist())) == 20 for row in negatives)
        hits += torch.bincount(negatives[target == 0].flatten(), minlength=400)
    other = hits[targets != 0]  # 300 samples, each expected 2 rows × 300 draws × 20 / 300 = 40
    assert other.min() > 15 and other.max() < 70 and hits[targets == 0].sum() == 0
