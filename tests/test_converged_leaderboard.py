"""The converged, equally tuned leaderboard (``fashion-tuned``, issue 20): the profile's shape
(every method tuned with the same budget on one pair, a size sweep of 4 students over ≥ 30× in
parameters, the doubled ``ce`` run beside it), per-pair epochs and losses, no plain cases where
the paper setting is a trial, the students channels_last on the CPU, the convergence table and
what tuning changed, both read from records."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kdbench.losses import LOSSES
from kdbench.matrix.profiles import PROFILES, Profile
from kdbench.matrix.profiles.shipped import TUNED_SWEEP
from kdbench.models import build_model
from kdbench.publish import convergence, tuned
from kdbench.publish.markdown import build_report
from kdbench.publish.summary import sections, summarize
from kdbench.publish.tables import NOT_RUN, leaderboard
from kdbench.registry import KdbenchError
from kdbench.results import make_record, read, records_frame
from kdbench.run.engine import Engine
from kdbench.spec import make_spec, pair_name

DKD2 = {"loss_options": (("nckd_weight", 2.0),)}
TUNED = PROFILES.get("fashion-tuned")
TWICE = PROFILES.get("fashion-tuned-2x")
MAIN = TUNED.pairs[0]
RECORDS = Path(__file__).resolve().parents[1] / "results" / "fashion-tuned"


def params(model: str) -> int:
    return sum(p.numel() for p in build_model(model, 10, (1, 28, 28)).parameters())


def test_every_method_is_tuned_on_the_main_pair_with_the_same_budget():
    specs = TUNED.specs(("cpu",), seeds=1)
    trials = {}
    for s in specs:
        if s.tune == "trial" and (s.teacher, s.student) == MAIN:
            trials[s.loss] = trials.get(s.loss, 0) + 1
    with_teacher = {n for n in LOSSES.names() if LOSSES.get(n).needs_teacher}
    assert set(trials) == with_teacher and set(trials.values()) == {4}
    tuned_losses = {s.loss for s in specs if s.tune == "tuned" and (s.teacher, s.student) == MAIN}
    assert tuned_losses == set(LOSSES.names())  # ce too: the table's baseline
    assert not [s for s in specs if not s.tune]  # the paper setting is a trial, not 3 more seeds
    assert TUNED.size(("cpu",)) == len(TUNED.specs(("cpu",)))


def test_four_student_sizes_span_thirty_times_and_each_runs_ce_kd_and_three_more():
    students = [s for _, s in TUNED.pairs]
    sizes = sorted(map(params, students))
    assert len(set(students)) >= 4 and sizes[-1] / sizes[0] >= 30
    for pair in TUNED.pairs[1:]:
        losses = TUNED.loss_names(pair)
        assert {"ce", "kd"} <= set(losses) and len(losses) == 5


def test_the_teacher_is_the_largest_model_and_trains_alone_on_crop_and_flip():
    assert {t for t, _ in TUNED.pairs} == {"fmnist_tl"}
    assert params("fmnist_tl") > 10 * max(params(s) for _, s in TUNED.pairs)
    spec = TUNED.specs(("cpu",), seeds=1)[0]
    assert dict(spec.dataset_options) == {"teacher_augment": True}


def test_the_doubled_run_is_ce_at_twice_each_students_epochs():
    once = {(s.student, s.seed): s for s in TUNED.specs(("cpu",)) if s.loss == "ce"}
    twice = TWICE.specs(("cpu",))
    assert {s.loss for s in twice} == {"ce"} and len(twice) == len(once)
    for s in twice:
        e = once[(s.student, s.seed)]
        assert s.epochs == 2 * e.epochs
        assert replace(s, epochs=e.epochs, tune="tuned") == e


def test_students_run_channels_last_on_the_cpu_where_it_was_measured_faster():
    specs = TUNED.specs(("cpu", "cuda"), seeds=1)
    assert {s.student for s in specs if s.channels_last} == {"fmnist_s", "fmnist_m", "fmnist_l"}
    assert not any(s.channels_last for s in specs if s.device == "cuda")  # there always


@pytest.mark.parametrize(
    "change, words",
    [
        ({"pair_epochs": {("fmnist_tl", "fmnist_t"): 5}}, "pair fmnist_tl/fmnist_t is not among"),
        ({"pair_losses": {("a", "b"): ("kd",)}}, "pair_losses: pair a/b is not among"),
        ({"pair_losses": {MAIN: ("nope*",)}}, "nope* names no loss of pair fmnist_tl/fmnist_m"),
    ],
)
def test_bad_per_pair_settings_get_one_line(change, words):
    with pytest.raises(KdbenchError) as err:
        replace(TUNED, **change).specs(("cpu",), seeds=1)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_channels_last_student_trains_in_that_format_and_says_so(tiny_spec, cache_dir):
    spec = tiny_spec("kd", channels_last=True)
    engine = Engine(cache_dir)
    outcome = engine.distill(spec)
    assert outcome.info["accel"]["channels_last"] is True
    plain = engine.distill(replace(spec, channels_last=False))
    assert plain.info["accel"]["channels_last"] is False
    # the same arithmetic in another order: equal to rounding, not bit for bit
    assert outcome.metrics["top1"] == pytest.approx(plain.metrics["top1"], abs=20)


def record(student: str, epochs: int, seed: int, top1: float, loss: str = "ce", **spec) -> dict:
    s = make_spec("fashion_mnist", "fmnist_tl", student, loss, epochs=epochs, seed=seed, **spec)
    return make_record(s, "ok", {"top1": top1, "val_top1": top1}, {})


def test_convergence_sets_ce_at_e_against_ce_at_2e_and_leaves_2e_out_of_the_leaderboard():
    records = [
        *(record("fmnist_m", 24, s, 90.0 + s / 10, tune="tuned") for s in range(3)),
        *(record("fmnist_m", 48, s, 90.3 + s / 10) for s in range(3)),
        *(record("fmnist_xs", 48, s, 80.0, tune="tuned") for s in range(3)),
        *(record("fmnist_xs", 96, s, 81.0) for s in range(3)),
        record("fmnist_m", 24, 0, 91.0, loss="kd", temperature=4.0, tune="tuned"),
    ]
    frame, table = convergence.split(records_frame(records))
    assert len(frame) == 7 and set(frame["epochs"]) == {24, 48}  # xs's 48 is its E
    rows = table.set_index("pair")
    assert rows.loc["fmnist_tl/fmnist_m", "converged"] == "yes"  # +0.30
    assert rows.loc["fmnist_tl/fmnist_m", "ce at E"] == "90.10 ± 0.10 (3)"
    assert rows.loc["fmnist_tl/fmnist_xs", "2E − E"] == "+1.00"
    assert rows.loc["fmnist_tl/fmnist_xs", "converged"] == "no"
    report = build_report(records_frame(records)).to_markdown()
    assert convergence.heading() in report and "| fmnist_tl/fmnist_xs " in report


def test_epochs_given_per_pair_do_not_split_the_leaderboard_but_other_settings_do():
    records = [record("fmnist_m", 24, 0, 90.0), record("fmnist_xs", 48, 0, 80.0)]
    assert [t for t, _ in sections(summarize(records_frame(records)))] == [""]
    records.append(record("fmnist_m", 48, 0, 90.0))
    assert len(list(sections(summarize(records_frame(records))))) == 2


def main_pair_case(loss: str, val: float, test: float, **spec) -> dict:
    """An ok record of ``loss`` on the main pair with validation and test top-1 ``val``, ``test``
    (the stage and the seed among ``spec``)."""
    s = make_spec("fashion_mnist", "fmnist_tl", "fmnist_m", loss, epochs=24, **spec)
    return make_record(s, "ok", {"top1": test, "val_top1": val}, {})


def trial(loss: str, val: float, test: float, **spec) -> dict:
    return main_pair_case(loss, val, test, seed=100, tune="trial", **spec)


def test_what_tuning_changed_names_the_paper_trial_and_the_one_chosen_on_validation():
    records = [
        trial("kd", 90.0, 92.0, temperature=4.0, alpha=0.9),  # the paper setting, best on test
        trial("kd", 91.0, 89.0, temperature=2.0, alpha=0.9),  # best on validation
        trial("kd", 85.0, 85.0, temperature=4.0, alpha=0.5),
        trial("at", 88.0, 88.0, loss_options=(("beta", 1000.0),)),
        trial("at", 87.0, 87.0, loss_options=(("beta", 10.0),)),
    ]
    rows = tuned.changes(records_frame(records)).set_index("loss")
    kd = rows.loc["kd"]
    assert kd["paper setting"] == "T=4 alpha=0.9 ce_weight=0.1"
    assert (kd["paper val"], kd["paper test"]) == ("90.00", "92.00")
    assert kd["chosen setting"] == "T=2 alpha=0.9 ce_weight=0.1" and kd["chosen test"] == "89.00"
    assert rows.loc["at", "paper setting"] == rows.loc["at", "chosen setting"] == "beta=1000"


def test_a_profile_without_tuning_keeps_its_plain_cases_whatever_paper_cases_says():
    plain = Profile(
        "p", "", "digits", (("cnn_t", "cnn_s"),), "digits", 2, 2, losses=("ce",), paper_cases=False
    )
    assert len(plain.specs(("cpu",))) == 3 == plain.size(("cpu",))


def test_a_tuned_cell_names_what_differs_from_the_losss_own_and_a_method_not_run_is_a_dash():
    records = [
        record("fmnist_m", 24, 0, 90.0, tune="tuned"),
        record("fmnist_xs", 48, 0, 80.0, tune="tuned"),
        record("fmnist_m", 24, 0, 91.0, "kd", temperature=2.0, alpha=0.5, tune="tuned"),
        record("fmnist_m", 24, 0, 90.5, "dkd", temperature=4.0, tune="tuned", **DKD2),
    ]
    board = leaderboard(summarize(records_frame(records))).set_index("method")
    assert board.loc["kd", "fmnist_tl/fmnist_m"] == "**91.00 (1) T=2 alpha=0.5 ce_weight=0.5**"
    assert board.loc["dkd", "fmnist_tl/fmnist_m"] == "90.50 (1) T=4 nckd_weight=2"
    assert board.loc["kd", "fmnist_tl/fmnist_xs"] == NOT_RUN
    ((title, _),) = sections(summarize(records_frame(records)))
    assert title == "tuned on validation, the trials not in these records"


def test_what_tuning_changed_is_said_in_words_per_pair():
    records = [
        trial("kd", 90.0, 92.0, temperature=4.0, alpha=0.9),
        trial("kd", 91.0, 89.0, temperature=2.0, alpha=0.9),
        trial("at", 88.0, 88.0, loss_options=(("beta", 1000.0),)),
        trial("at", 87.0, 87.0, loss_options=(("beta", 10.0),)),
    ]
    (line,) = tuned.change_findings(tuned.changes(records_frame(records)))
    assert line == (
        "- **fmnist_tl/fmnist_m**: tuning kept the paper setting of 1 of 2 methods; it moved 1, "
        "their test top-1 on the tuning seed by -3.00 points (median); the largest moves: `kd` "
        "T=4 → T=2 (-3.00)."
    )
    assert line in build_report(records_frame(records)).to_markdown()


def tuned_case(loss: str, seed: int, val: float, test: float, **spec) -> dict:
    return main_pair_case(loss, val, test, seed=seed, tune="tuned", **spec)


def test_a_tuned_run_in_progress_says_which_methods_lack_trials_and_names_its_plots_short(
    tmp_path,
):
    """While the methods' trial counts differ, the tuned section's title gives the most common
    count and names the others (here 16 of kdbench's methods: hundreds of characters); its
    plots' file names stay short."""
    pytest.importorskip("matplotlib")
    from kdbench.publish.plots import write_plots

    spec = {
        loss: {"temperature": 4.0} if LOSSES.get(loss).uses_temperature else {} for loss in LOSSES
    }
    losses = list(LOSSES)
    records = [
        *(trial(loss, 90.0, 90.0, **spec[loss]) for loss in losses),
        *(trial(loss, 90.0, 90.0, alpha=0.25, **spec[loss]) for loss in losses[1::2]),
        *(tuned_case(loss, 0, 90.0, 90.0, **spec[loss]) for loss in losses),
    ]
    summary = summarize(records_frame(records))
    ((title, _),) = [(t, p) for t, p in sections(summary) if p["tune"].eq("tuned").all()]
    fewer = "; ".join(f"{loss} on fmnist_tl/fmnist_m: 1" for loss in losses[::2])
    assert title == f"tuned on validation, 2 trials per method, except {fewer}"
    assert len(title) > 300
    names = [p.name for p in write_plots(summary, tmp_path, lambda p: p["tune"].eq("tuned").all())]
    assert names and max(map(len, names)) <= 120


def test_the_size_sweeps_three_best_are_chosen_on_validation_never_on_test():
    records = [
        tuned_case(loss, seed, val, test, **spec)
        for loss, val, test, spec in [
            ("ce", 90.0, 90.0, {}),
            ("kd", 95.0, 95.0, {"temperature": 4.0}),  # every size runs it anyway
            ("dkd", 92.0, 80.0, {"temperature": 4.0}),
            ("fitnet", 91.5, 85.0, {}),
            ("at", 91.0, 99.0, {}),  # best on test, third on validation
            ("nst", 90.5, 99.5, {}),
        ]
        for seed in range(3)
    ]
    summary = summarize(records_frame(records))
    assert tuned.best(summary, pair_name(*MAIN), 3, TUNED_SWEEP) == ["dkd", "fitnet", "at"]
    assert tuned.best(summary, "fmnist_tl/fmnist_xs", 3) == []


def test_every_other_size_runs_ce_kd_and_the_main_tables_three_best_by_validation():
    records = [r for r in read([RECORDS]).records if r["spec"]["student"] == MAIN[1]]
    done = {(r["spec"]["loss"], r["spec"]["seed"]) for r in records if r["spec"]["tune"] == "tuned"}
    wanted = {(s.loss, s.seed) for s in TUNED.specs(("cpu",)) if s.tune == "tuned"}
    if not wanted <= done:
        pytest.skip(f"the main table is not complete yet: {len(wanted & done)} of {len(wanted)}")
    three = tuned.best(summarize(records_frame(records)), pair_name(*MAIN), 3, TUNED_SWEEP)
    for pair in TUNED.pairs[1:]:
        assert set(TUNED.loss_names(pair)) == {*TUNED_SWEEP, *three}
