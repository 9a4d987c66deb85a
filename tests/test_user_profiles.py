"""Profiles users write in their own project's pyproject.toml: read like the shipped ones, run
by the plugin in a project of their own, listed by the CLI, every mistake a one-line usage
error before any training."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdbench.cli import main
from kdbench.losses import LOSSES
from kdbench.matrix.profiles import PROFILES
from kdbench.matrix.user_profiles import user_profiles
from kdbench.registry import KdbenchError
from kdbench.results import load_records

USAGE_ERROR = int(pytest.ExitCode.USAGE_ERROR)
TINY = {
    "description": '"digits, one pair, ce and kd"',
    "dataset": '"digits"',
    "pairs": '["cnn_t/cnn_m"]',
    "losses": '["ce", "kd"]',
    "recipe": '"digits"',
    "epochs": "8",
    "teacher_epochs": "8",
    "seeds": "1",
}  # the smoke profile's teacher
PAGE = Path(__file__).resolve().parents[1] / "docs" / "profiles.md"


def readme_block(language: str, marker: str) -> str:
    """docs/profiles.md's ```language block that contains ``marker``."""
    (block,) = [
        b for b in re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), re.S) if marker in b
    ]
    return block


def profile_toml(name: str = "tiny", **keys: str | None) -> str:
    """``[tool.kdbench.profiles.<name>]`` with TINY's keys, changed by ``keys`` (None: left out)."""
    entries = {**TINY, **keys}
    return f"[tool.kdbench.profiles.{name}]\n" + "".join(
        f"{key} = {value}\n" for key, value in entries.items() if value is not None
    )


def test_a_toml_copy_of_quick_makes_quicks_cases(tmp_path):
    """Integers where floats are meant (T, β) and both pair forms give the very same cases."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[tool.kdbench.profiles.my-quick]\n"
        'dataset = "digits"\n'
        'pairs = [["cnn_t", "cnn_s"], "cnn_t/cnn_m"]\n'
        'recipe = "digits"\n'
        "epochs = 15\n"
        "batch_size = 32\n"
        'sweep = ["kd"]\n'
        "temperatures = [1, 2, 4, 8]\n"
        "[tool.kdbench.profiles.my-quick.loss_options]\n"
        "at = { beta = 100 }\n"
        "dkd = { warmup = 0.3333333333333333 }\n"
        "crd = { beta = 0.1 }\n"
        "rld = { warmup = 0.3333333333333333 }\n"
        "mlkd = { alpha = 0.5 }\n"
    )
    (mine,) = user_profiles(pyproject)
    assert (mine.name, mine.teacher_epochs, mine.seeds) == ("my-quick", 15, 3)
    assert [s.case_id for s in mine.specs()] == [s.case_id for s in PROFILES.get("quick").specs()]


def test_the_required_keys_make_a_profile_of_every_loss_at_its_papers_temperature(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[tool.kdbench.profiles.least]\ndataset = "digits"\n'
        'pairs = ["cnn_t/cnn_s"]\nrecipe = "digits"\nepochs = 12\n'
    )
    (least,) = user_profiles(pyproject)
    assert (least.teacher_epochs, least.seeds, least.batch_size) == (12, 3, 64)
    specs = least.specs(("cpu",), seeds=1)
    assert sorted(s.loss for s in specs) == LOSSES.names()
    assert all(s.temperature == LOSSES.get(s.loss).default_temperature for s in specs)


def test_a_data_set_option_may_be_the_teachers_alone(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        profile_toml(dataset='"synthetic"', dataset_options="{ teacher_augment = true }")
    )
    (tiny,) = user_profiles(pyproject)
    spec = tiny.specs(("cpu",), seeds=1)[0]
    assert dict(spec.dataset_options) == {"teacher_augment": True}
    assert spec.teacher_key()["dataset_options"] == {"augment": True}


def test_pair_settings_apply_to_their_pair_only(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        profile_toml(
            pairs='["cnn_t/cnn_m", "cnn_t/cnn_s"]',
            losses='["kd", "dkd"]',
            sweep='["kd"]',
            temperatures="[2, 8]",
        )
        + "[tool.kdbench.profiles.tiny.loss_options]\n"
        "dkd = { warmup = 0.25 }\n"
        '[tool.kdbench.profiles.tiny.pair_settings."cnn_t/cnn_s"]\n'
        "dkd = { nckd_weight = 2, temperature = 3 }\n"
        "kd = { alpha = 0.5 }\n"
    )
    (profile,) = user_profiles(pyproject)
    cases = {
        (s.student, s.loss, s.temperature, s.alpha, s.loss_options) for s in profile.specs(("cpu",))
    }
    assert cases == {
        ("cnn_m", "kd", 2.0, 0.9, ()),
        ("cnn_m", "kd", 8.0, 0.9, ()),
        ("cnn_s", "kd", 2.0, 0.5, ()),
        ("cnn_s", "kd", 8.0, 0.5, ()),
        ("cnn_m", "dkd", 4.0, 1.0, (("warmup", 0.25),)),
        ("cnn_s", "dkd", 3.0, 1.0, (("nckd_weight", 2.0), ("warmup", 0.25))),
    }


def test_the_readme_example_runs_in_a_users_own_project(kd_suite, pytester):
    """docs/profiles.md's profile and test file, as written there, in a project of their own."""
    pytester.makepyprojecttoml(readme_block("toml", "[tool.kdbench.profiles.my-digits]"))
    pytester.makepyfile(test_distill=readme_block("python", "def test_my_case("))
    result = kd_suite("test_distill.py", "--kd-profile", "my-digits", "--kd-device", "cpu")
    result.assert_outcomes(passed=2)
    (run,) = (pytester.path / "results" / "runs").glob("*.jsonl")
    records = load_records([run])
    assert sorted(r["name"] for r in records) == [
        "digits-cnn_t/cnn_m-ce-cpu-s0",
        "digits-cnn_t/cnn_m-kd-T2-cpu-s0",
    ]
    kd = next(r["spec"] for r in records if r["spec"]["loss"] == "kd")
    assert (kd["alpha"], kd["ce_weight"], kd["epochs"], kd["teacher_epochs"]) == (0.5, 0.5, 8, 8)
    leaderboard = run.with_suffix(".md").read_text()  # next to the run's records
    for r in records:
        assert re.search(rf"\| cnn_t/cnn_m \| {r['spec']['loss']} +\|", leaderboard)
    assert "kdbench leaderboard" in result.stdout.str()


def test_list_profiles_finds_the_projects_from_a_subfolder(tmp_path, monkeypatch, capsys):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(profile_toml("my-digits"))
    (tmp_path / "tests").mkdir()
    monkeypatch.chdir(tmp_path / "tests")
    assert main(["list", "profiles"]) == 0
    out = capsys.readouterr().out
    assert out.split("\n\n")[0].split() == sorted([*PROFILES.names(), "my-digits"])
    rows = {
        cells[0]: cells
        for cells in (
            [c.strip() for c in line.split("|")[1:-1]]
            for line in out.splitlines()
            if line.startswith("|")
        )
    }
    assert rows["name"][3] == "from"
    assert (rows["my-digits"][3], rows["quick"][3]) == (str(pyproject), "kdbench")
    pyproject.write_text(profile_toml("my-digits", epochs="0"))
    assert main(["list", "profiles"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"kdbench: error: {pyproject}: tool.kdbench.profiles.my-digits.epochs: must be an "
        "integer ≥ 1, got 0"
    )


def test_kdbench_slurm_plans_a_run_of_a_user_profile(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(profile_toml("my-digits"))
    (tmp_path / "suites").mkdir()  # kdbench slurm runs `pytest suites` from the project root
    monkeypatch.chdir(tmp_path)
    assert main(["slurm", "--kd-profile", "my-digits", "--results", "r"]) == 0
    assert "--kd-profile my-digits" in (tmp_path / "r" / "shards.sbatch").read_text()


def test_without_a_profiles_table_only_the_shipped_are_listed(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["list", "profiles", "--names-only"]) == 0
    assert capsys.readouterr().out.split() == PROFILES.names()


def test_per_pair_epochs_and_losses_paper_cases_and_channels_last_read_like_the_shipped(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        profile_toml(pairs='["cnn_t/cnn_m", "cnn_t/cnn_s"]', losses='["ce", "kd", "dkd"]')
        + 'channels_last = ["cnn_s"]\n'
        + "paper_cases = false\n"
        + "[tool.kdbench.profiles.tiny.tuning]\n"
        + "kd = { alpha = [0.9, 0.5] }\n"
        + "dkd = { nckd_weight = [8, 2] }\n"
        + '[tool.kdbench.profiles.tiny.pair_epochs]\n"cnn_t/cnn_s" = 3\n'
        + '[tool.kdbench.profiles.tiny.pair_losses]\n"cnn_t/cnn_s" = ["ce", "kd"]\n'
    )
    (profile,) = user_profiles(pyproject)
    cases = {
        (s.student, s.loss, s.tune, s.epochs, s.channels_last) for s in profile.specs(("cpu",))
    }
    assert cases == {
        ("cnn_m", "ce", "tuned", 8, False),
        ("cnn_m", "kd", "trial", 8, False),
        ("cnn_m", "kd", "tuned", 8, False),
        ("cnn_m", "dkd", "trial", 8, False),
        ("cnn_m", "dkd", "tuned", 8, False),
        ("cnn_s", "ce", "tuned", 3, True),
        ("cnn_s", "kd", "trial", 3, True),
        ("cnn_s", "kd", "tuned", 3, True),
    }
    based = tmp_path / "based" / "pyproject.toml"
    based.parent.mkdir()
    based.write_text('[tool.kdbench.profiles.mine]\nbase = "fashion-tuned"\nseeds = 1\n')
    (mine,) = user_profiles(based)
    shipped = PROFILES.get("fashion-tuned")
    assert mine.specs(("cpu",)) == shipped.specs(("cpu",), seeds=1)


AT = "tool.kdbench.profiles.tiny"


@pytest.mark.parametrize(
    "name, keys, names",
    [
        (
            "tiny",
            {"epoch": "5"},
            [
                f"{AT}: unknown key 'epoch'",
                "did you mean epochs",
                "valid: description, dataset",
                "pair_settings",
            ],
        ),
        (
            "tiny",
            {"recipe": None},
            [f"{AT}: missing key 'recipe'", "required: dataset, pairs, recipe, epochs"],
        ),
        ("tiny", {"losses": '"kd"'}, [f"{AT}.losses: must be a non-empty list, got 'kd'"]),
        ("tiny", {"epochs": "-1"}, [f"{AT}.epochs: must be an integer ≥ 1, got -1"]),
        ("tiny", {"seeds": '"3"'}, [f"{AT}.seeds: must be an integer, got '3'"]),
        (
            "tiny",
            {"dataset": '"digts"'},
            [f"{AT}.dataset: unknown dataset 'digts'", "did you mean digits", "valid: cifar10"],
        ),
        (
            "tiny",
            {"pairs": '["cnn_t/cnn_x"]'},
            [f"{AT}.pairs[0]: unknown model 'cnn_x'", "did you mean", "valid:", "cnn_s"],
        ),
        (
            "tiny",
            {"pairs": '[["cnn_t"]]'},
            [f"{AT}.pairs[0]: a pair is", '"teacher/student" or ["teacher", "student"]'],
        ),
        (
            "tiny",
            {"recipe": '"digit"'},
            [f"{AT}.recipe: unknown recipe 'digit'", "did you mean digits", "valid: crd, digits"],
        ),
        (
            "tiny",
            {"losses": '["ce", "dkx*"]'},
            [f"{AT}.losses[1]: pattern 'dkx*' matches no loss", "valid: ab, at"],
        ),
        (
            "tiny",
            {"sweep": '["dkd"]'},
            [f"{AT}.sweep[0]: pattern 'dkd' matches no loss of this profile", "valid: ce, kd"],
        ),
        (
            "tiny",
            {"temperatures": "[2, 2.0]"},
            [f"{AT}.temperatures[1]: temperature 2.0 is listed twice"],
        ),
        (
            "tiny",
            {"loss_options": "{ kd = { beta = 1.0 } }"},
            [
                f"{AT}.loss_options.kd: unknown setting 'beta' of loss 'kd'",
                "valid: temperature, alpha, ce_weight",
            ],
        ),
        (
            "tiny",
            {"loss_options": "{ kdd = { alpha = 0.5 } }"},
            [f"{AT}.loss_options.kdd: unknown loss 'kdd'", "did you mean kd", "valid: ab"],
        ),
        (
            "tiny",
            {"loss_options": "{ at = { beta = 100.0 } }"},
            [
                f"{AT}.loss_options.at: loss 'at' is not among this profile's losses",
                "valid: ce, kd",
            ],
        ),
        (
            "tiny",
            {"losses": '["ce", "fitnet"]', "loss_options": "{ fitnet = { hint_layer = 1.5 } }"},
            [f"{AT}.loss_options.fitnet.hint_layer: must be an integer, got 1.5"],
        ),
        (
            "tiny",
            {"pair_settings": '{ "cnn_t/cnn_s" = { kd = { temperature = 2.0 } } }'},
            [f"{AT}.pair_settings: pair 'cnn_t/cnn_s' is not in pairs", "valid: cnn_t/cnn_m"],
        ),
        (
            "tiny",
            {"pair_settings": '{ "cnn_t/cnn_m" = { kd = { temperature = "2" } } }'},
            [f"{AT}.pair_settings.\"cnn_t/cnn_m\".kd.temperature: must be a number, got '2'"],
        ),
        (
            "tiny",
            {"loss_options": "{ kd = { alpha = 1.5 } }"},
            [f"{AT}: invalid alpha 1.5: must be in [0, 1]"],
        ),
        (
            "tiny",
            {"losses": '["ce", "ctkd"]', "sweep": '["ctkd"]', "temperatures": "[1]"},
            [f"{AT}: invalid ctkd temperature 1", "between t_start and t_start + t_range (1, 21)"],
        ),
        (
            "tiny",
            {"dataset": '"synthetic"', "dataset_options": "{ num_trian = 100 }"},
            [
                f"{AT}.dataset_options: unknown option 'num_trian' of data set 'synthetic'",
                "did you mean num_train",
                "valid: num_classes",
            ],
        ),
        (
            "tiny",
            {"dataset": '"synthetic"', "dataset_options": '{ augment = "yes" }'},
            [f"{AT}.dataset_options.augment: must be true or false, got 'yes'"],
        ),
        (
            "tiny",
            {"dataset": '"synthetic"', "dataset_options": '{ teacher_augment = "yes" }'},
            [f"{AT}.dataset_options.teacher_augment: must be true or false, got 'yes'"],
        ),
        (
            "tiny",
            {"pair_epochs": '{ "cnn_t/cnn_s" = 3 }'},
            [f"{AT}.pair_epochs: pair 'cnn_t/cnn_s' is not in pairs", "valid: cnn_t/cnn_m"],
        ),
        (
            "tiny",
            {"pair_epochs": '{ "cnn_t/cnn_m" = 0 }'},
            [f'{AT}.pair_epochs."cnn_t/cnn_m": must be an integer ≥ 1, got 0'],
        ),
        (
            "tiny",
            {"pair_losses": '{ "cnn_t/cnn_m" = ["kx"] }'},
            [f"{AT}.pair_losses.\"cnn_t/cnn_m\"[0]: pattern 'kx' matches no loss", "valid: ab"],
        ),
        (
            "tiny",
            {"channels_last": '["cnn_x"]'},
            [f"{AT}.channels_last[0]: unknown model 'cnn_x'", "valid:"],
        ),
        (
            "tiny",
            {"paper_cases": '"no"'},
            [f"{AT}.paper_cases: must be true or false, got 'no'"],
        ),
        (
            "quick",
            {},
            [
                "tool.kdbench.profiles.quick: the name 'quick' is taken by kdbench's "
                "shipped profile 'quick'",
                "shipped: cifar10, cifar100-crd",
            ],
        ),
        (
            "my digits",
            {},
            ['tool.kdbench.profiles."my digits": invalid profile name', "letters, digits"],
        ),
    ],
    ids=[
        "unknown-key",
        "missing-key",
        "string-for-list",
        "negative-epochs",
        "string-for-int",
        "unknown-dataset",
        "unknown-model",
        "pair-form",
        "unknown-recipe",
        "pattern-matches-no-loss",
        "sweep-outside-losses",
        "temperature-twice",
        "unknown-loss-option",
        "unknown-loss-in-options",
        "options-for-a-loss-not-run",
        "float-for-int-option",
        "setting-for-a-pair-not-run",
        "string-for-number",
        "alpha-out-of-range",
        "loss-constraint",
        "unknown-dataset-option",
        "dataset-option-kind",
        "teacher-dataset-option-kind",
        "epochs-for-a-pair-not-run",
        "zero-epochs-for-a-pair",
        "pair-losses-pattern",
        "channels-last-model",
        "paper-cases-kind",
        "shipped-name",
        "name-with-a-space",
    ],
)
def test_bad_user_profile_is_a_one_line_usage_error_before_training(
    kd_suite, pytester, name, keys, names
):
    toml_name = name if re.fullmatch(r"[\w-]+", name) else f'"{name}"'
    pytester.makepyprojecttoml(profile_toml(toml_name, **keys))
    cache, results = pytester.path / "cache", pytester.path / "results"
    result = kd_suite("--kd-profile", name, "--kd-device", "cpu", cache=cache, results=results)
    assert result.ret == USAGE_ERROR
    lines = [line for line in result.outlines + result.errlines if names[0] in line]
    assert len(lines) == 1 and "error" in lines[0].lower(), result.errlines
    assert all(n in lines[0] for n in names), lines[0]
    assert f"{pytester.path / 'pyproject.toml'}: " in lines[0]
    assert "Traceback" not in str(result.stdout) + str(result.stderr)
    assert not results.exists() and not cache.exists()


def test_an_unknown_profile_name_suggests_the_users_profiles(kd_suite, pytester):
    """kd_suite passes --kd-cache, an existing folder outside the project: pytest takes it for a
    path argument and sets its rootdir above the project; the profiles are found all the same."""
    pytester.makepyprojecttoml(profile_toml("my-digits"))
    result = kd_suite("--kd-profile", "my-digit", "--kd-device", "cpu")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*unknown profile 'my-digit': did you mean my-digits? "
            "valid: cifar10, *my-digits, quick, smoke*"
        ]
    )


def test_profiles_must_be_a_table(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.kdbench]\nprofiles = "quick"\n')
    with pytest.raises(KdbenchError, match=r"tool\.kdbench\.profiles must be a table, got 'quick'"):
        user_profiles(pyproject)
    pyproject.write_text('[project]\nname = "x"\n')
    assert user_profiles(Path(pyproject)) == []
