"""The equal tuning budget (kdbench.matrix.tuning): trials on the tuning seed, the choice on
validation only and reproducible from the records, the same number of trials for every method,
bad grids refused with one line at collection, and a tuned run under ``-n 2`` and
``--kd-resume`` through the real suite."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from kdbench.matrix import tuning
from kdbench.matrix.profiles import PROFILES, Profile
from kdbench.registry import KdbenchError
from kdbench.results import load_records, make_record
from kdbench.spec import make_spec

USAGE_ERROR = int(pytest.ExitCode.USAGE_ERROR)
TUNED = Profile(
    "tuned-digits",
    "",
    dataset="digits",
    pairs=(("cnn_t", "cnn_s"), ("cnn_t", "cnn_m")),
    recipe="digits",
    epochs=2,
    teacher_epochs=2,
    seeds=2,
    losses=("ce", "kd", "dkd", "fitnet"),
    sweep=("kd",),
    tuning={
        "kd": {"alpha": (0.5, 0.9), "temperature": (2.0, 4.0)},
        "dkd": {"nckd_weight": (2.0, 4.0, 8.0, 16.0)},
        "fitnet": {"beta": (10.0, 100.0), "alpha": (1.0, 0.5)},
    },
)


def trial_record(alpha: float, val: float, test: float, status: str = "ok") -> dict:
    spec = make_spec(
        "synthetic", "cnn_t", "cnn_s", "kd", temperature=4.0, alpha=alpha, seed=100, tune="trial"
    )
    return make_record(spec, status, {"val_top1": val, "top1": test} if status == "ok" else {}, {})


def test_the_choice_is_the_best_validation_top1_not_the_best_test():
    records = [
        trial_record(0.5, val=80.0, test=95.0),  # best on test
        trial_record(0.7, val=90.0, test=70.0),  # best on validation
        trial_record(0.9, val=99.0, test=99.0, status="diverged"),
    ]  # a diverged trial loses
    assert tuning.choose(records)["alpha"] == 0.7
    assert tuning.choose(records[2:]) is None  # no trial finished ok: the paper setting
    assert list(tuning.choices(records).values()) == [tuning.choose(records)]


def test_ties_on_validation_go_to_the_same_setting_in_any_order():
    a, b = trial_record(0.5, 90.0, 80.0), trial_record(0.9, 90.0, 85.0)
    assert tuning.choose([a, b]) == tuning.choose([b, a]) and tuning.choose([a, b])["alpha"] == 0.5


def test_every_method_gets_the_same_number_of_trials_on_the_tuning_seed():
    specs = TUNED.specs(("cpu",))
    assert len(specs) == TUNED.size(("cpu",))
    trials = [s for s in specs if s.tune == "trial"]
    counts = {}
    for s in trials:
        counts[s.pair, s.loss] = counts.get((s.pair, s.loss), 0) + 1
    assert set(counts.values()) == {4} and len(counts) == 2 * 3  # ce has nothing to tune
    assert {s.seed for s in trials} == {TUNED.tuning_seed}
    assert specs[: len(trials)] == trials  # the trials come first: the tuned cases read them
    tuned = [s for s in specs if s.tune == "tuned"]
    assert len(tuned) == 2 * 4 * 2 and {s.seed for s in tuned} == {0, 1}
    assert {s.name for s in tuned} >= {
        "digits-cnn_t/cnn_s-kd-tuned-cpu-s0",
        "digits-cnn_t/cnn_m-ce-tuned-cpu-s1",
    }
    assert len({s.name for s in specs}) == len(specs)  # every trial has an id of its own
    assert {len(tuning.trials_of(s, specs)) for s in tuned if s.loss != "ce"} == {4}


def test_untuned_cases_keep_their_ids():
    plain = replace(TUNED, tuning={})
    untuned = [s for s in TUNED.specs(("cpu",)) if not s.tune]
    assert [s.case_id for s in untuned] == [s.case_id for s in plain.specs(("cpu",))]
    assert all("tune" not in s.to_dict() for s in untuned)


@pytest.mark.parametrize(
    "grid, words",
    [
        (
            {"kd": {"alpa": (0.9,)}},
            "tuning: unknown setting 'alpa' of loss 'kd': did you mean alpha?",
        ),
        ({"kd": {"alpha": ()}}, "tuning: kd.alpha: empty grid"),
        ({"kd": {}}, "tuning: loss 'kd' has an empty grid"),
        (
            {"kd": {"alpha": (0.5, 0.7)}},
            "tuning: kd.alpha: the grid 0.5, 0.7 lacks the paper setting 0.9",
        ),
        ({"kd": {"alpha": (0.5, 0.9, 0.5)}}, "tuning: kd.alpha: value 0.5 is listed twice"),
        (
            {"dkd": {"nckd_weight": (8.0,)}},
            "tuning: unequal budgets: 'dkd' has 1 trials, 'fitnet' "
            "has 4: every method gets the same number of trials",
        ),
        ({"fitnet": None}, "tuning: loss 'fitnet' of the profile has no grid"),
        ({"ce": {"alpha": (1.0,)}}, "tuning: loss 'ce' trains without a teacher"),
        ({"ab": {"alpha": (1.0,)}}, "tuning: loss 'ab' is not among this profile's losses"),
        ({"kd": {"alpha": tuple(i / 10 for i in range(10))}}, "more than 8"),
    ],
)
def test_a_bad_grid_is_refused_with_one_line(grid, words):
    with pytest.raises(KdbenchError) as err:
        grids = {k: v for k, v in {**TUNED.tuning, **grid}.items() if v is not None}
        replace(TUNED, tuning=grids).specs(("cpu",), seeds=1)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_paper_setting_of_every_pair_must_be_in_the_grid():
    per_pair = replace(TUNED, pair_settings={("cnn_t", "cnn_m"): {"kd": {"alpha": 0.7}}})
    with pytest.raises(KdbenchError, match=r"lacks the paper setting 0\.7 of pair cnn_t/cnn_m"):
        per_pair.specs(("cpu",))


def test_of_the_shipped_profiles_only_the_converged_leaderboard_tunes():
    assert {n for n in PROFILES.names() if PROFILES.get(n).tuning} == {"fashion-tuned"}


def test_a_tuned_case_waits_for_trials_still_running(monkeypatch):
    monkeypatch.setattr(tuning, "POLL_S", 0)
    trials = [
        make_spec(
            "synthetic", "cnn_t", "cnn_s", "kd", temperature=4.0, alpha=a, seed=100, tune="trial"
        )
        for a in (0.5, 0.9)
    ]
    tuned = replace(trials[1], seed=0, tune="tuned")
    records = {
        t.case_id: make_record(t, "ok", {"val_top1": v, "top1": 100 - v}, {})
        for t, v in zip(trials, (60.0, 50.0))
    }
    polls = iter([{}, dict(list(records.items())[:1]), records])
    pending = {t.case_id for t in trials}
    spec, info = tuning.resolve(tuned, trials, lambda: next(polls), pending, wait=True)
    assert spec.alpha == 0.5 and spec.tune == "tuned" and spec.seed == 0
    assert info == {
        "trials": [t.case_id for t in trials],
        "criterion": "val_top1",
        "chosen": tuning.setting(records[trials[0].case_id]["spec"]),
    }
    with pytest.raises(KdbenchError, match="has not run yet"):
        tuning.resolve(tuned, trials, dict, pending, wait=False)  # one process: it never would
    with pytest.raises(KdbenchError, match=r"has no record and is not selected.*-m tuning"):
        tuning.resolve(tuned, trials, dict, set(), wait=True)


TOML = """[tool.kdbench.profiles.tiny-tuned]
dataset = "synthetic"
dataset_options = { num_test = 64, num_train = 256 }
pairs = ["cnn_t/cnn_s"]
recipe = "digits"
epochs = 2
seeds = 2
losses = ["ce", "kd"]
tuning_seed = 7
[tool.kdbench.profiles.tiny-tuned.tuning]
kd = { alpha = [0.5, 0.9] }
"""
TINY = ("--kd-profile", "tiny-tuned", "--kd-device", "cpu")


def test_a_tuned_run_under_xdist_resumes_and_its_choice_is_reproducible(kd_suite, pytester):
    pytester.makepyprojecttoml(TOML)
    kd_suite(*TINY, "-n", "2", subprocess=True).assert_outcomes(passed=2 + 2 * 2 * 2)
    records = load_records([pytester.path / "results" / "runs"])
    trials = {r["case_id"]: r for r in records if r["spec"].get("tune") == "trial"}
    assert len(trials) == 2 and {r["spec"]["seed"] for r in trials.values()} == {7}
    assert all("-tune-" in r["name"] for r in trials.values())
    tuned = [r for r in records if r["spec"].get("tune") == "tuned"]
    assert sorted(r["spec"]["loss"] for r in tuned) == ["ce", "ce", "kd", "kd"]
    choice = tuning.choose(trials.values())
    for r in tuned:
        if r["spec"]["loss"] == "kd":  # the chosen setting is in the record's spec
            assert sorted(r["tuning"]["trials"]) == sorted(trials)
            assert tuning.setting(r["spec"]) == choice == r["tuning"]["chosen"]
            assert tuning.choose(trials[i] for i in r["tuning"]["trials"]) == choice
    assert list(tuning.choices(records).values()) == [choice]
    (leaderboard,) = (pytester.path / "results" / "runs").glob("*.md")
    text = leaderboard.read_text()  # the tuned table, the paper settings' and the trials'
    assert "(tuned on validation, 2 trials per method)" in text
    assert "(paper settings, untuned)" in text and "(tuning trials on the tuning seed" in text
    board = text.split("(tuned on validation, 2 trials per method)")[1].split("###")[0]
    assert re.search(rf"\| kd +\| .* alpha={choice['alpha']:g} ", board)  # one row, its choice

    again = kd_suite(*TINY, "--kd-resume", "-rs")
    again.assert_outcomes(skipped=len(records))  # tuned cases included: resolved, then resumed
    (summary,) = [p for p in (pytester.path / "results" / "runs").glob("*.md") if p != leaderboard]
    tuned_board = summary.read_text().split("(tuned on validation, 2 trials per method)")[1]
    assert "| kd " in tuned_board.split("###")[0]  # the resumed tuned kd cases are in it
    assert len(load_records([pytester.path / "results" / "runs"])) == len(records)


def test_marks_and_ids_select_the_stages(kd_suite, pytester):
    pytester.makepyprojecttoml(TOML)
    trials = kd_suite(*TINY, "-m", "tuning", "--collect-only", "-q").stdout.lines
    assert sorted(line.split("[")[-1] for line in trials if "::" in line) == [
        "synthetic-cnn_t/cnn_s-kd-tune-T4-a0.5-c0.5-cpu-s7]",
        "synthetic-cnn_t/cnn_s-kd-tune-T4-a0.9-c0.1-cpu-s7]",
    ]
    tuned = kd_suite(*TINY, "-m", "tuned", "--collect-only", "-q").stdout.lines
    assert len([line for line in tuned if "-tuned-" in line]) == 4


def test_tuned_cases_without_their_trials_fail_with_one_line(kd_suite, pytester):
    pytester.makepyprojecttoml(TOML)
    result = kd_suite(*TINY, "-m", "tuned", "-k", "kd")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*its tuning trial *kd-tune-T4-a0.5-c0.5-cpu-s7 has no record and "
            "is not selected: run the trials first (pytest -m tuning)*"
        ]
    )


@pytest.mark.parametrize(
    "table, words",
    [
        ("kd = { alpah = [0.9] }", "tuning: unknown setting 'alpah' of loss 'kd'"),
        ("kd = { alpha = [] }", "tuning: kd.alpha: empty grid"),
        ("kd = { alpha = [0.5] }", "tuning: kd.alpha: the grid 0.5 lacks the paper setting 0.9"),
        ('kd = { alpha = ["0.9"] }', "tiny-tuned.tuning.kd.alpha[0]: must be a number, got '0.9'"),
    ],
)
def test_a_bad_grid_in_pyproject_is_a_usage_error_at_collection(kd_suite, pytester, table, words):
    pytester.makepyprojecttoml(
        TOML.split("[tool.kdbench.profiles.tiny-tuned.tuning]")[0]
        + f"[tool.kdbench.profiles.tiny-tuned.tuning]\n{table}\n"
    )
    result = kd_suite(*TINY, "--collect-only")
    assert result.ret == USAGE_ERROR
    lines = [line for line in result.outlines + result.errlines if words in line]
    assert len(lines) == 1 and "pyproject.toml" in lines[0], result.errlines


def test_a_pyproject_profile_turns_tuning_on_for_a_shipped_profile(tmp_path):
    from kdbench.matrix.user_profiles import user_profiles

    (tmp_path / "pyproject.toml").write_text("""[tool.kdbench.profiles.quick-tuned]
base = "quick"
losses = ["ce", "kd", "dkd"]
epochs = 5
[tool.kdbench.profiles.quick-tuned.tuning]
kd = { alpha = [0.5, 0.9] }
dkd = { nckd_weight = [4.0, 8.0] }
""")
    (profile,) = user_profiles(tmp_path / "pyproject.toml")
    quick = PROFILES.get("quick")
    assert (profile.dataset, profile.pairs, profile.recipe, profile.sweep, profile.epochs) == (
        quick.dataset,
        quick.pairs,
        quick.recipe,
        ("kd",),
        5,
    )
    assert profile.loss_options == {"dkd": quick.loss_options["dkd"]}  # the losses it runs
    assert len([s for s in profile.specs(("cpu",)) if s.tune == "trial"]) == 2 * 2 * 2


def test_a_tuned_cifar100_crd_keeps_each_pairs_paper_settings_in_its_grid(tmp_path):
    from kdbench.matrix.user_profiles import user_profiles

    (tmp_path / "pyproject.toml").write_text("""[tool.kdbench.profiles.crd-tuned]
base = "cifar100-crd"
losses = ["ce", "kd"]
[tool.kdbench.profiles.crd-tuned.tuning]
kd = { alpha = [0.5, 0.9], temperature = [2.0, 4.0] }
""")
    (profile,) = user_profiles(tmp_path / "pyproject.toml")
    assert profile.pairs == PROFILES.get("cifar100-crd").pairs and profile.epochs == 240
    (tmp_path / "pyproject.toml").write_text("""[tool.kdbench.profiles.crd-tuned]
base = "cifar100-crd"
losses = ["ce", "kd"]
tuning = { kd = { alpha = [0.5, 0.7] } }
""")
    with pytest.raises(
        KdbenchError,
        match=r"crd-tuned: tuning: kd\.alpha: the grid 0\.5, 0\.7 "
        r"lacks the paper setting 0\.9 of pair",
    ):
        user_profiles(tmp_path / "pyproject.toml")


def test_an_unknown_base_is_one_line(tmp_path):
    from kdbench.matrix.user_profiles import user_profiles

    (tmp_path / "pyproject.toml").write_text('[tool.kdbench.profiles.mine]\nbase = "quik"\n')
    with pytest.raises(KdbenchError) as err:
        user_profiles(tmp_path / "pyproject.toml")
    assert "tool.kdbench.profiles.mine.base: unknown profile 'quik': did you mean quick?" in str(
        err.value
    ) and "\n" not in str(err.value)
