"""The settings behind each published CIFAR-100 number that kdbench prints next to its own.

``CIFAR100_PAIR_SETTINGS[(teacher, student)][loss]`` is a dict of settings for one
(pair, method) of ``kdbench/reference/published_cifar100.csv``. A setting is ``temperature``,
``alpha`` (the weight of the distillation term), ``ce_weight`` (the weight of cross-entropy)
or the name of an option of the loss class (its ``options`` dict). The engine's objective is
``ce_weight·CE + alpha·term``, and kdbench keeps a method's own scale factor (β of FitNet,
AT, …) inside the term as the ``beta`` option.

How each source's knobs map onto kdbench's:

- RepDistiller (CRD tables): ``train_student.py`` computes ``r·CE + a·KD(T) + b·term``. KD:
  ``alpha`` = a, ``ce_weight`` = r, ``temperature`` = ``--kd_T``. Every other method runs with
  ``-a 0``: ``alpha`` = 1, ``ce_weight`` = r (1, the default), ``beta`` = b. Its README and
  ``scripts/run_cifar_distill.sh`` give one command per method (shown for resnet32x4 →
  resnet8x4) and no per-pair settings, so one setting serves every pair of its tables.
- mdistiller (DKD): ``CE_WEIGHT``·CE + min(epoch/``WARMUP``, 1)·(``ALPHA``·TCKD +
  ``BETA``·NCKD) at ``T``: ``ce_weight``, ``tckd_weight``, ``nckd_weight``, ``temperature``;
  ``warmup`` is WARMUP as a fraction of the 240 epochs; ``alpha`` = 1. Its KD numbers are
  RepDistiller's (same values, same weights in its ``cfg.py``).
- logit-standardization-KD: the settings of a number are in the name of the log its README
  links, ``<method>,<teacher>,<student>,<base temp>,<kd weight>[,<DKD BETA>].txt`` (the
  authors' answer in its issue #12: set BETA, base temperature and KD weight from those names).
  KD: ``CE_WEIGHT`` 0.1·CE + kd weight·KD(z-scored logits, base temp): ``ce_weight`` 0.1,
  ``alpha`` 1, ``kd_weight``, ``temperature``. DKD, as ``tools/train.py`` computes it since
  commit 6b58661 (2024-05-18): ALPHA = 1·kd weight, BETA = BETA·kd weight, T = base temp.
- DIST_KD (``configs/strategies/distill/dist_cifar.yaml`` of its submodule
  hunto/image_classification_sota, one config for every CIFAR pair): ``ori_loss_weight`` 1·CE +
  ``kd_loss_weight`` 2·τ²(β·inter + γ·intra), ``kd: dist_t4`` (τ 4, β = γ = 1). kdbench's
  ``alpha`` is a weight in [0, 1], so the factor 2 goes into the options: ``beta`` = ``gamma``
  = 2, ``alpha`` 1.

    for pair, (beta, resolution, normalize) in CATKD.items():
        put(pair, "catkd", _catkd(beta, resolution, normalize))
    for pair, beta in SDD_BETA.items():
        put(pair, "sdd", _sdd(beta))
- CAT-KD (GzyAftermath/CAT-KD @ 4467073, configs/cifar100/CAT_KD/<file>, run by
  tools/train.py): CE_WEIGHT·CE + CAT_loss_weight·CAT: ``ce_weight`` = CE_WEIGHT (onlyCAT
  False in every CAT_KD config), ``alpha`` 1, ``beta`` = CAT_loss_weight, ``resolution`` =
  CAM_RESOLUTION, ``normalize`` = IF_NORMALIZE, ``binarize`` 0 (IF_BINARIZE unset: cfg.py False).
- SDD (shicaiwei123/SDD-CVPR2024 @ e412036): the README table is SD-DKD, run as
  ``train_origin.py --cfg configs/cifar100/sdd_dkd/<file> --M [1,2,4]`` (the M of each pair in
  teacher_*.sh): cfg.py CFG.DKD (CE_WEIGHT 1, ALPHA 1, T 4), BETA per file (cfg.py 8.0 where a
  file sets none), ``--warmup`` 20 (default) epochs of 240.
- TTM (zkxufo/TTM @ fe457b3, README): ``train_student.py --distill ttm --ttm_l 0.1 -r 1 -a 0
  -b 45`` for vgg13 → vgg8: ``temperature`` 1/l = 10, ``ce_weight`` 1, ``alpha`` 1, ``beta`` 45.
  The paper's appendix lists the other pairs' settings; not read here, so only this pair's
  number is printed.
- MLKD (Jin-Ying/Multi-Level-Logit-Distillation @ 5ee473f, mdistiller/engine/cfg.py CFG.KD):
  T 4, CE_WEIGHT 0.1 on each view (``ce_weight`` 0.2 over the two views the engine averages),
  KD_WEIGHT 0.9 (``alpha``); the two views are the ``strong_view`` data option its loss adds.
  Its numbers come from its own recipe (240–960 epochs, lr 0.01–0.025), not kdbench's ``crd``.

Declared: the weights, the temperature of a loss that has one, and every option the source
sets on its command line or in its config (``--hint_layer``, ``--init_epochs``, ``--nce_*``,
``--feat_dim``, DKD's ``WARMUP``, …), also where it equals kdbench's default. Constants the
source does not expose (AT's p, VID's initial variance, RKD's 25/50, numerical ε) and
kdbench's variant switches (``paper``, ``main_stage``) stay at kdbench's defaults, which follow
the same code (see each loss's docstring).
"""

from __future__ import annotations

Pair = tuple[str, str]
Settings = dict[str, float]

EPOCHS = 240  # every source's CIFAR-100 run; fractions of the run are relative to it


def _term(**options: float) -> Settings:
    """A RepDistiller method other than KD: ``-r 1 -a 0 -b β``, β inside the term."""
    return {"alpha": 1.0, "ce_weight": 1.0, **options}


# RepDistiller README + scripts/run_cifar_distill.sh (the flags), train_student.py (defaults).
REPDISTILLER: dict[str, Settings] = {
    # `--distill kd -r 0.1 -a 0.9 -b 0`, --kd_T 4; = mdistiller cfg.py CFG.KD
    # (TEMPERATURE 4, CE_WEIGHT 0.1, KD_WEIGHT 0.9)
    "kd": {"temperature": 4.0, "alpha": 0.9, "ce_weight": 0.1},
    "fitnet": _term(beta=100.0, hint_layer=2),  # `--distill hint -a 0 -b 100`, --hint_layer 2
    "at": _term(beta=1000.0),  # `--distill attention -a 0 -b 1000`
    "sp": _term(beta=3000.0),  # `--distill similarity -a 0 -b 3000`
    "cc": _term(beta=0.02, dim=128),  # `--distill correlation -a 0 -b 0.02`, --feat_dim 128
    "vid": _term(beta=1.0),  # `--distill vid -a 0 -b 1`
    "rkd": _term(beta=1.0),  # `--distill rkd -a 0 -b 1`
    "pkt": _term(beta=30000.0),  # `--distill pkt -a 0 -b 30000`
    # `--distill abound -a 0 -b 1`, --init_epochs 30 before the 240: the main stage's term is
    # 0 in train_student.py (CE only), so -b has no effect and no β is declared
    "ab": _term(init=30 / EPOCHS),
    "ft": _term(beta=200.0, init=30 / EPOCHS),  # `--distill factor -a 0 -b 200`, --init_epochs 30
    "fsp": _term(init=30 / EPOCHS),  # `--distill fsp -a 0 -b 50`: as AB, -b has no effect
    "nst": _term(beta=50.0),  # `--distill nst -a 0 -b 50`
    # `--distill crd -a 0 -b 0.8`, --feat_dim 128, --nce_k 16384, --nce_t 0.07, --nce_m 0.5
    "crd": _term(beta=0.8, dim=128, nce_k=16384, nce_t=0.07, nce_m=0.5),
}

# The pairs of RepDistiller's README tables: 7 same-architecture pairs, 6 cross-architecture
# pairs (its second table has no FSP row).
REPDISTILLER_SAME: tuple[Pair, ...] = (
    ("wrn_40_2", "wrn_16_2"),
    ("wrn_40_2", "wrn_40_1"),
    ("resnet56", "resnet20"),
    ("resnet110", "resnet20"),
    ("resnet110", "resnet32"),
    ("resnet32x4", "resnet8x4"),
    ("vgg13", "vgg8"),
)
REPDISTILLER_CROSS: tuple[Pair, ...] = (
    ("vgg13", "mobilenetv2"),
    ("resnet50", "mobilenetv2"),
    ("resnet50", "vgg8"),
    ("resnet32x4", "shufflenetv1"),
    ("resnet32x4", "shufflenetv2"),
    ("wrn_40_2", "shufflenetv1"),
)

# mdistiller's README labels one column "ResNet32x4 / MobileNet-V2"; its KD value is
# RepDistiller's resnet32x4 → shufflenetv2 and the only matching config is
# configs/cifar100/dkd/res32x4_shuv2.yaml, whose settings are used for it below.
MDISTILLER_MISLABELLED: Pair = ("resnet32x4", "mobilenetv2")


def _dkd(beta: float) -> Settings:
    """mdistiller cfg.py CFG.DKD: CE_WEIGHT 1, ALPHA 1, T 4, WARMUP 20 epochs; BETA per pair."""
    return {
        "temperature": 4.0,
        "alpha": 1.0,
        "ce_weight": 1.0,
        "tckd_weight": 1.0,
        "nckd_weight": beta,
        "warmup": 20 / EPOCHS,
    }


# DKD.BETA of mdistiller configs/cifar100/dkd/<file>; a file without it uses cfg.py's 8.0.
DKD_BETA: dict[Pair, float] = {
    ("resnet56", "resnet20"): 2.0,  # res56_res20.yaml
    ("resnet110", "resnet32"): 2.0,  # res110_res32.yaml
    ("resnet32x4", "resnet8x4"): 8.0,  # res32x4_res8x4.yaml (default)
    ("wrn_40_2", "wrn_16_2"): 6.0,  # wrn40_2_wrn_16_2.yaml
    ("wrn_40_2", "wrn_40_1"): 6.0,  # wrn40_2_wrn_40_1.yaml
    ("vgg13", "vgg8"): 6.0,  # vgg13_vgg8.yaml
    ("resnet32x4", "shufflenetv1"): 8.0,  # res32x4_shuv1.yaml (default)
    ("wrn_40_2", "shufflenetv1"): 8.0,  # wrn40_2_shuv1.yaml (default)
    ("vgg13", "mobilenetv2"): 6.0,  # vgg13_mv2.yaml
    ("resnet50", "mobilenetv2"): 8.0,  # res50_mv2.yaml (default)
    MDISTILLER_MISLABELLED: 8.0,  # res32x4_shuv2.yaml (default), see above
}


def _kd_ls(base_temp: float, kd_weight: float) -> Settings:
    """logit-standardization-KD cfg.py CFG.KD: CE_WEIGHT 0.1; ``--base-temp``, ``--kd-weight``."""
    return {"temperature": base_temp, "alpha": 1.0, "ce_weight": 0.1, "kd_weight": kd_weight}


# (base temp, kd weight) from the README's "KD+Ours" links, logs/KD/kd,<T>,<S>,<temp>,<weight>.txt
KD_LS: dict[Pair, tuple[float, float]] = {
    ("resnet32x4", "resnet8x4"): (2.0, 9.0),  # kd,resnet32x4,resnet8x4,2,9.txt
    ("vgg13", "vgg8"): (3.0, 9.0),  # kd,vgg13,vgg8,3,9.txt
    ("wrn_40_2", "wrn_40_1"): (2.0, 9.0),  # kd,wrn_40_2,wrn_40_1,2,9.txt
    ("wrn_40_2", "wrn_16_2"): (2.0, 9.0),  # kd,wrn_40_2,wrn_16_2,2,9.txt
    ("resnet56", "resnet20"): (2.0, 9.0),  # kd,resnet56,resnet20,2,9.txt
    ("resnet110", "resnet32"): (2.0, 9.0),  # kd,resnet110,resnet32,2,9.txt
    ("resnet110", "resnet20"): (4.0, 12.0),  # kd,resnet110,resnet20,4,12.txt
    # kd,resnet32x4,ShuffleV2,2,9.txt as named; but its train loss (1.67 in epoch 1, 0.10 in
    # epoch 240) is on the scale of the kd-weight-1 log below (1.51, 0.19), not of the other
    # kd-weight-9 logs (6.8–15.8, 0.5–1.7): the weight actually run may have been 1
    ("resnet32x4", "shufflenetv2"): (2.0, 9.0),
    ("wrn_40_2", "resnet8x4"): (2.0, 9.0),  # kd,wrn_40_2,resnet8x4,2,9.txt
    ("resnet50", "mobilenetv2"): (3.0, 1.0),  # kd,ResNet50,MobileNetV2,3,1.txt
}


def _dkd_ls(base_temp: float, kd_weight: float, beta: float) -> Settings:
    """logit-standardization-KD DKD (cfg.py CE_WEIGHT 1, ALPHA 1, WARMUP 20) with tools/train.py
    ``--logit-stand``: ALPHA and BETA times ``--kd-weight``, T = ``--base-temp``."""
    return {
        "temperature": base_temp,
        "alpha": 1.0,
        "ce_weight": 1.0,
        "tckd_weight": kd_weight,
        "nckd_weight": beta * kd_weight,
        "warmup": 20 / EPOCHS,
    }


# (base temp, kd weight, DKD BETA) from the README's "DKD+Ours" links,
# logs/DKD/dkd,<T>,<S>,<temp>,<weight>[,<BETA>].txt
DKD_LS: dict[Pair, tuple[float, float, float]] = {
    # dkd,resnet32x4,resnet8x4,2,9.txt: no BETA in the name, so the config's (cfg.py 8.0).
    # Before commit 6b58661 tools/train.py set BETA = 9·9 = 81 and left T at 4 (kdbench's
    # dkd_ls defaults); the log's name alone cannot tell which code produced it
    ("resnet32x4", "resnet8x4"): (2.0, 9.0, 8.0),
    ("vgg13", "vgg8"): (2.0, 15.0, 2.0),  # dkd,vgg13,vgg8,2,15,2.0.txt
    ("wrn_40_2", "wrn_40_1"): (2.0, 12.0, 2.0),  # dkd,wrn_40_2,wrn_40_1,2,12,2.0.txt
    ("wrn_40_2", "wrn_16_2"): (2.0, 12.0, 2.0),  # dkd,wrn_40_2,wrn_16_2,2,12,2.0.txt
    ("resnet56", "resnet20"): (3.0, 18.0, 2.0),  # dkd,resnet56,resnet20,3,18,2.0.txt
    ("resnet110", "resnet32"): (2.0, 15.0, 2.0),  # dkd,resnet110,resnet32,2,15,2.0.txt
    ("resnet110", "resnet20"): (2.0, 15.0, 2.0),  # dkd,resnet110,resnet20,2,15,2.0.txt
}

# DIST_KD README (CIFAR-100 table) runs every pair with dist_cifar.yaml: kd_loss_weight 2,
# ori_loss_weight 1, kd dist_t4.
DIST: Settings = {"temperature": 4.0, "alpha": 1.0, "ce_weight": 1.0, "beta": 2.0, "gamma": 2.0}
DIST_PAIRS: tuple[Pair, ...] = (
    ("wrn_40_2", "wrn_40_1"),
    ("resnet56", "resnet20"),
    ("resnet32x4", "resnet8x4"),
    ("resnet50", "mobilenetv2"),
    ("resnet32x4", "shufflenetv1"),
    ("resnet32x4", "shufflenetv2"),
)


def _catkd(beta: float, resolution: int, normalize: int) -> Settings:
    """CAT-KD configs/cifar100/CAT_KD/<file>: CE_WEIGHT 1, onlyCAT False; CAT_loss_weight,
    CAM_RESOLUTION, IF_NORMALIZE per pair."""
    return {
        "alpha": 1.0,
        "ce_weight": 1.0,
        "beta": beta,
        "resolution": resolution,
        "normalize": normalize,
        "binarize": 0,
    }


# (CAT_loss_weight, CAM_RESOLUTION, IF_NORMALIZE) of configs/cifar100/CAT_KD/<file>, for the
# pairs whose number is printed (configs exist for 11 of the 13 pairs).
CATKD: dict[Pair, tuple[float, int, int]] = {
    ("resnet32x4", "resnet8x4"): (15.0, 2, 0),  # res32x4_res8x4.yaml
    ("resnet32x4", "shufflenetv2"): (600.0, 4, 1),  # res32x4_shuv2.yaml
    ("vgg13", "mobilenetv2"): (15.0, 2, 1),  # vgg13_mv2.yaml
    ("resnet50", "mobilenetv2"): (40.0, 2, 1),  # res50_mv2.yaml
}


def _sdd(beta: float) -> Settings:
    """SD-DKD, SDD-CVPR2024 train_origin.py --M [1,2,4]: cfg.py CFG.DKD (CE_WEIGHT 1, ALPHA 1,
    T 4), --warmup 20; BETA per config; the complementary weight 2 is a constant of multi_dkd."""
    return {
        "temperature": 4.0,
        "alpha": 1.0,
        "ce_weight": 1.0,
        "dkd": 1,
        "scales": 3,
        "complementary": 2.0,
        "tckd_weight": 1.0,
        "nckd_weight": beta,
        "warmup": 20 / EPOCHS,
    }


# DKD.BETA of configs/cifar100/sdd_dkd/<file> (cfg.py 8.0 where none); --M [1,2,4] for all six
# in teacher_resnet32x4.sh, teacher_wrn.sh, teacher_vgg.sh, teacher_unpair.sh.
SDD_BETA: dict[Pair, float] = {
    ("resnet32x4", "shufflenetv1"): 8.0,  # res32x4_shuv1.yaml (default)
    ("wrn_40_2", "shufflenetv1"): 8.0,  # wrn40_2_shuv1.yaml (default)
    ("resnet50", "mobilenetv2"): 8.0,  # res50_mv2.yaml (default)
    ("vgg13", "mobilenetv2"): 6.0,  # vgg13_mv2.yaml
    ("resnet32x4", "shufflenetv2"): 8.0,  # res32x4_shuv2.yaml (default)
    ("resnet50", "vgg8"): 8.0,  # res50_vgg8.yaml (default)
}

# TTM README, vgg13 → vgg8 (`--ttm_l 0.1 -r 1 -b 45 -a 0`)
TTM: dict[Pair, Settings] = {
    ("vgg13", "vgg8"): {"temperature": 10.0, "alpha": 1.0, "ce_weight": 1.0, "beta": 45.0}
}
# MLKD cfg.py CFG.KD for every pair it reports
MLKD: Settings = {"temperature": 4.0, "alpha": 0.9, "ce_weight": 0.2, "paper": 0.0}
MLKD_PAIRS: tuple[Pair, ...] = (
    ("resnet56", "resnet20"),
    ("resnet110", "resnet32"),
    ("resnet32x4", "resnet8x4"),
    ("wrn_40_2", "wrn_16_2"),
    ("wrn_40_2", "wrn_40_1"),
    ("vgg13", "vgg8"),
    ("vgg13", "mobilenetv2"),
    ("resnet50", "mobilenetv2"),
    ("resnet32x4", "shufflenetv2"),
)


def _pair_settings() -> dict[Pair, dict[str, Settings]]:
    table: dict[Pair, dict[str, Settings]] = {}

    def put(pair: Pair, loss: str, settings: Settings) -> None:
        table.setdefault(pair, {})[loss] = dict(settings)

    for pair in REPDISTILLER_SAME + REPDISTILLER_CROSS:
        for loss, settings in REPDISTILLER.items():
            if loss != "fsp" or pair in REPDISTILLER_SAME:
                put(pair, loss, settings)
    put(MDISTILLER_MISLABELLED, "kd", REPDISTILLER["kd"])
    for pair, beta in DKD_BETA.items():
        put(pair, "dkd", _dkd(beta))
    for pair, (base_temp, kd_weight) in KD_LS.items():
        put(pair, "kd_ls", _kd_ls(base_temp, kd_weight))
    for pair, (base_temp, kd_weight, beta) in DKD_LS.items():
        put(pair, "dkd_ls", _dkd_ls(base_temp, kd_weight, beta))
    for pair in DIST_PAIRS:
        put(pair, "dist", DIST)
    for pair, (beta, resolution, normalize) in CATKD.items():
        put(pair, "catkd", _catkd(beta, resolution, normalize))
    for pair, beta in SDD_BETA.items():
        put(pair, "sdd", _sdd(beta))
    for pair, settings in TTM.items():
        put(pair, "ttm", settings)
    for pair in MLKD_PAIRS:
        put(pair, "mlkd", MLKD)
    return table


CIFAR100_PAIR_SETTINGS: dict[Pair, dict[str, Settings]] = _pair_settings()
