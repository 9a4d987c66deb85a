"""Hostile input: damaged image folders, records that are JSON but not records, a disk that
fills mid-line, a cache entry that pickles arbitrary objects, a profile of 200,000 cases. Each
is one clear line (or a warning) with the right exit code, and nothing already recorded is
lost. Every input is crafted here, in ``tmp_path``."""

from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from test_datasets_torchvision import write_image_folder

from kdbench.cli import main
from kdbench.data import load_dataset
from kdbench.matrix.user_profiles import user_profiles
from kdbench.registry import KdbenchError
from kdbench.results import append_record, make_record, read
from kdbench.run.cache import TensorCache, sha256_file
from kdbench.run.engine import Engine
from kdbench.spec import make_spec

USAGE_ERROR = int(pytest.ExitCode.USAGE_ERROR)


# ------------------------------------------------------------------ 1. image folders


def image_folder(root: Path) -> Path:
    write_image_folder(root, classes=("cat", "dog"), per_class=3)
    return root


def not_an_image(folder: Path) -> Path:
    path = folder / "train" / "dog" / "x.png"
    path.write_text("this is a text file named like a PNG\n")
    return path


def truncated_jpeg(folder: Path) -> Path:
    path = folder / "val" / "cat" / "1.jpg"
    with Image.open(folder / "val" / "cat" / "1.png") as image:
        image.save(path, quality=90)
    (folder / "val" / "cat" / "1.png").unlink()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("damage", [not_an_image, truncated_jpeg])
def test_an_unreadable_image_is_one_line_naming_it_when_the_folder_opens(tmp_path, damage):
    folder = image_folder(tmp_path / "images")
    bad = damage(folder)
    with pytest.raises(KdbenchError) as error:
        load_dataset("imagefolder", tmp_path, path="images", size=8, workers=0)
    message = str(error.value)
    assert "\n" not in message and str(bad) in message and "delete or replace" in message


def test_an_empty_class_folder_is_one_line_naming_it(tmp_path):
    folder = image_folder(tmp_path / "images")
    (folder / "train" / "eel").mkdir()
    (folder / "val" / "eel").mkdir()
    (folder / "val" / "eel" / "0.png").write_bytes((folder / "val" / "cat" / "0.png").read_bytes())
    with pytest.raises(KdbenchError) as error:
        load_dataset("imagefolder", tmp_path, path="images", size=8, workers=0)
    message = str(error.value)
    assert "\n" not in message and str(folder / "train" / "eel") in message
    assert "no images" in message and ".jpg" in message


def test_a_sound_folder_is_checked_once(tmp_path, monkeypatch):
    """Every image is decoded when the folder is first opened; a later opening of the same
    files decodes none (a stamp in the folder remembers them), a changed file again."""
    folder = image_folder(tmp_path / "images")
    decoded: list[str] = []
    open_image = Image.open
    monkeypatch.setattr(Image, "open", lambda f, *a: decoded.append(f.name) or open_image(f, *a))
    load_dataset("imagefolder", tmp_path, path="images", size=8, workers=0)
    assert len(decoded) == 12
    load_dataset("imagefolder", tmp_path, path="images", size=8, workers=0)
    assert len(decoded) == 12
    bad = not_an_image(folder)
    with pytest.raises(KdbenchError, match=str(bad)):
        load_dataset("imagefolder", tmp_path, path="images", size=8, workers=0)


def imagefolder_profile(folder: Path) -> str:
    return (
        "[tool.kdbench.profiles.mine]\n"
        'dataset = "imagefolder"\npairs = ["cnn_t/cnn_s"]\nrecipe = "digits"\nepochs = 1\n'
        'seeds = 1\nlosses = ["ce"]\n'
        f'dataset_options = {{ path = "{folder}", size = 8, workers = 0 }}\n'
    )


def test_a_damaged_folder_stops_the_session_before_any_training(kd_suite, pytester):
    folder = image_folder(pytester.path / "images")
    (folder / "train" / "eel").mkdir()
    bad = not_an_image(folder)
    pytester.makepyprojecttoml(imagefolder_profile(folder))
    result = kd_suite("--kd-profile", "mine", "--kd-device", "cpu")
    assert result.ret == USAGE_ERROR
    out = str(result.stdout) + str(result.stderr)
    lines = [line for line in out.splitlines() if "imagefolder" in line]
    assert len(lines) == 1 and "error" in lines[0].lower(), lines
    assert "Traceback" not in out and "INTERNALERROR" not in out
    assert not (pytester.path / "results" / "runs").exists() or not list(
        (pytester.path / "results" / "runs").glob("*.jsonl")
    )
    (folder / "train" / "eel").rmdir()
    result = kd_suite("--kd-profile", "mine", "--kd-device", "cpu")
    assert result.ret == USAGE_ERROR and str(bad) in str(result.stdout) + str(result.stderr)


# ------------------------------------------------------------------ 2. records off the schema


def good_records() -> list[dict]:
    out = []
    for seed in range(2):
        for loss, t in (("ce", None), ("kd", 4.0)):
            spec = make_spec("digits", "cnn_t", "cnn_s", loss, temperature=t, seed=seed, epochs=2)
            out.append(
                make_record(
                    spec,
                    "ok",
                    {
                        "top1": 90.0 + seed + (t or 0),
                        "val_top1": 89.0 + seed + (t or 0),
                        "teacher_top1": 95.0,
                        "train_s": 1.0,
                    },
                    {"git_sha": "abc1234", "torch": "2.x"},
                )
            )
    return out


def without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


OFF_SCHEMA = {  # name → (make the damaged record from a sound one, what the note says)
    "no-group_id": (lambda r: without(r, "group_id"), "group_id missing"),
    "no-status": (lambda r: without(r, "status"), "status missing"),
    "top1-ninety": (
        lambda r: {**r, "metrics": {**r["metrics"], "top1": "ninety"}},
        "metrics.top1 is 'ninety', not a number",
    ),
    "seed-zero": (
        lambda r: {**r, "spec": {**r["spec"], "seed": "zero"}},
        "spec.seed is 'zero', not an integer",
    ),
    "status-fine": (lambda r: {**r, "status": "fine"}, "status 'fine' is not one of"),
    "schema-99": (lambda r: {**r, "schema": 99}, "schema 99"),
    "spec-list": (lambda r: {**r, "spec": [1]}, "spec is [1], not an object"),
}


def crafted_run(folder: Path, damage: str) -> tuple[Path, list[dict]]:
    """A run file of sound records and one damaged one, its third line."""
    good = good_records()
    make, _ = OFF_SCHEMA[damage]
    path = folder / f"{damage}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for i, r in enumerate(good):
            fh.write(json.dumps(make(r) if i == 2 else r) + "\n")
    return path, good


@pytest.mark.parametrize("damage", OFF_SCHEMA)
def test_the_loader_names_a_record_off_the_schema_and_keeps_the_rest(tmp_path, damage):
    path, good = crafted_run(tmp_path, damage)
    loaded = read([path])
    assert sorted(r["case_id"] for r in loaded.records) == sorted(
        r["case_id"] for i, r in enumerate(good) if i != 2
    )
    (skipped,) = loaded.unusable
    assert (skipped.file, skipped.line) == (path, 3)
    assert OFF_SCHEMA[damage][1] in skipped.why and "\n" not in skipped.why


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "latex", "html"])
@pytest.mark.parametrize(
    "damage", ["no-group_id", "no-status", "top1-ninety", "seed-zero", "schema-99"]
)
def test_report_notes_a_record_off_the_schema_in_every_format(tmp_path, capsys, damage, fmt):
    path, _ = crafted_run(tmp_path, damage)
    out = tmp_path / f"report.{fmt}"
    assert main(["report", str(path), "--format", fmt, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{path}:3" in err and OFF_SCHEMA[damage][1] in err and "Traceback" not in err
    text = out.read_text()
    if fmt in ("md", "latex", "html"):  # the formats with notes
        assert "skipped 1 corrupt or torn record line(s)" in text
    if fmt == "md":
        assert "records**: 3 (3 ok)" in text  # the damaged record is not among them


@pytest.mark.parametrize(
    "damage", ["no-group_id", "no-status", "top1-ninety", "seed-zero", "schema-99"]
)
@pytest.mark.parametrize("side", ["baseline", "current"])
def test_compare_refuses_a_record_off_the_schema_with_exit_2(tmp_path, capsys, damage, side):
    damaged, good = crafted_run(tmp_path / "damaged", damage)
    sound = tmp_path / "sound.jsonl"
    for r in good:
        append_record(sound, r)
    args = [damaged, sound] if side == "baseline" else [sound, damaged]
    assert main(["compare", *map(str, args)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kdbench: error:")
    assert f"{damaged}:3" in err and OFF_SCHEMA[damage][1] in err


# ------------------------------------------------------------------ 4. a disk that fills


def test_a_full_disk_mid_line_leaves_the_run_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "run.jsonl"
    first, second = good_records()[:2]
    append_record(path, first)
    before = path.read_bytes()
    real_write = os.write

    def fills_up(fd: int, data) -> int:  # the disk takes part of the line, then is full
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", fills_up)
    with pytest.raises(OSError, match="No space left"):
        append_record(path, second)
    monkeypatch.undo()
    assert path.read_bytes() == before
    append_record(path, second)  # space again: the next record lands on a line of its own
    loaded = read([path])
    assert not loaded.unusable and len(loaded.records) == 2


def test_a_short_write_is_undone_and_reported(tmp_path, monkeypatch):
    path = tmp_path / "run.jsonl"
    append_record(path, good_records()[0])
    before = path.read_bytes()
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:10])))
    with pytest.raises(OSError, match="No space left"):
        append_record(path, good_records()[1])
    assert path.read_bytes() == before


# ------------------------------------------------------------------ 5. a pickle in the cache


class Payload:
    """Not a tensor: a cache entry holding it is not loaded (weights_only)."""


def test_a_cache_entry_of_arbitrary_objects_is_a_corrupt_entry(tmp_path):
    import torch

    cache = TensorCache(tmp_path, "teacher_outputs")
    cache.save("k", {"logits": torch.zeros(2)}, {})
    payload, meta = cache.paths("k")
    torch.save({"logits": Payload()}, payload)
    meta.write_text(json.dumps({"sha256": sha256_file(payload)}))  # the checksum matches
    with pytest.warns(UserWarning, match="corrupt teacher_outputs cache entry") as warned:
        assert cache.load("k") is None
    (warning,) = warned
    assert "\n" not in str(warning.message) and "not only tensors" in str(warning.message)
    assert not payload.exists() and not meta.exists()


def test_a_case_on_a_pickled_teacher_output_entry_rebuilds_it(cache_dir, tiny_spec, distill):
    import torch

    spec = tiny_spec("fitnet")
    first = distill(Engine(cache_dir=cache_dir), spec)
    (entry,) = (cache_dir / "teacher_outputs").glob("*.pt")
    torch.save({"logits": Payload()}, entry)
    meta = entry.with_suffix(".json")
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "sha256": sha256_file(entry)}))
    with pytest.warns(UserWarning, match="corrupt teacher_outputs cache entry"):
        second = distill(Engine(cache_dir=cache_dir), spec)
    assert second["metrics"]["top1"] == first["metrics"]["top1"]


# ------------------------------------------------------------------ 7. a profile too large


def huge_profile(tmp_path: Path, seeds: int) -> Path:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[tool.kdbench.profiles.huge]\n"
        'dataset = "digits"\npairs = ["cnn_t/cnn_s"]\nrecipe = "digits"\n'
        f'epochs = 2\nlosses = ["ce", "kd"]\nseeds = {seeds}\n'
    )
    return pyproject


def test_a_profile_of_200000_cases_is_read_in_a_blink_and_refused(tmp_path):
    from kdbench.matrix.profiles import MAX_CASES, size_check

    start = time.perf_counter()
    (huge,) = user_profiles(huge_profile(tmp_path, 100_000))
    assert time.perf_counter() - start < 5
    with pytest.raises(KdbenchError) as error:
        size_check(huge, ("cpu",))
    message = str(error.value)
    assert "\n" not in message and "200,000 cases" in message
    assert f"{MAX_CASES:,}" in message and "--kd-max-cases" in message
    assert size_check(huge, ("cpu",), max_cases=200_000) is not None  # allowed, still a warning


def recorded(spec, train_s: float) -> dict:
    return make_record(spec, "ok", {"top1": 90.0, "train_s": train_s}, {})


def test_a_large_profile_warns_with_its_count_and_recorded_time(tmp_path):
    from kdbench.matrix.profiles import WARN_CASES, size_check

    (profile,) = user_profiles(huge_profile(tmp_path, 6_000))
    assert size_check(profile, ("cpu",), seeds=WARN_CASES // 2) is None
    ce_0, ce_1, kd_0, _ = sorted(profile.specs(("cpu",), seeds=2), key=lambda s: s.loss)
    records = [
        recorded(ce_0, 2.0),
        recorded(ce_1, 4.0),  # ce: median 3 s
        recorded(make_spec("digits", "cnn_t", "cnn_s", "ce", epochs=9), 10.0),
        recorded(replace(kd_0, epochs=9), 8.0),
    ]  # of all: median 6 s
    message = size_check(profile, ("cpu",), records=records)
    # 6,000 ce cases × 3 s + 6,000 kd cases × 6 s (no kd record of this configuration)
    assert "12,000 cases" in message and "about 15.0 h" in message and "\n" not in message
    unknown = size_check(profile, ("cpu",))
    assert "12,000 cases" in unknown and "no recorded durations" in unknown


# ------------------------------------------------------------------ 8. a read-only cache


def read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` as a read-only mount shows it (tests may run as root, whom chmod binds not):
    no write access, and any file opened for writing in it fails."""
    import builtins

    inside = lambda path: Path(os.path.abspath(path)).is_relative_to(folder)  # noqa: E731
    access, real_open, mkstemp = os.access, builtins.open, __import__("tempfile").mkstemp

    def denied(path) -> OSError:
        return PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def no_write_open(path, mode="r", *args, **kwargs):
        if inside(path) and any(c in mode for c in "wax+"):
            raise denied(path)
        return real_open(path, mode, *args, **kwargs)

    def no_temp(*args, dir=None, **kwargs):
        if dir is not None and inside(dir):
            raise denied(dir)
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, **kw: False if mode & os.W_OK and inside(p) else access(p, mode, **kw),
    )
    monkeypatch.setattr(builtins, "open", no_write_open)
    monkeypatch.setattr("tempfile.mkstemp", no_temp)


def test_a_read_only_cache_that_holds_the_entries_is_used_read_only(
    cache_dir, tiny_spec, distill, monkeypatch
):
    spec = tiny_spec("fitnet")
    first = distill(Engine(cache_dir=cache_dir), spec)
    entries = sorted(p.relative_to(cache_dir) for p in cache_dir.rglob("*"))
    read_only(monkeypatch, cache_dir)
    second = distill(Engine(cache_dir=cache_dir), spec)
    assert second["metrics"]["top1"] == first["metrics"]["top1"]
    assert sorted(p.relative_to(cache_dir) for p in cache_dir.rglob("*")) == entries


def test_a_read_only_cache_builds_a_missing_entry_for_the_session_only(tmp_path, monkeypatch):
    import torch

    cache = TensorCache(tmp_path / "cache", "teacher_outputs")
    cache.save("kept", {"logits": torch.ones(2)}, {})
    read_only(monkeypatch, tmp_path / "cache")
    assert cache.get_or_build("kept", lambda: ({"logits": torch.zeros(2)}, {}))[2] is False
    with pytest.warns(UserWarning, match="read-only: entry new built for this session only"):
        payload, _, built = cache.get_or_build("new", lambda: ({"logits": torch.zeros(2)}, {}))
    assert built and payload["logits"].tolist() == [0.0, 0.0]
    assert not cache.paths("new")[0].exists()


# ------------------------------------------------------------------ 3. report --out


@pytest.mark.parametrize("where", ["a-folder", "under-a-file"])
@pytest.mark.parametrize("fmt", ["md", "html"])
def test_report_out_where_nothing_can_be_written_is_one_line_exit_2(tmp_path, capsys, where, fmt):
    records = tmp_path / "run.jsonl"
    for r in good_records():
        append_record(records, r)
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("")
    out = {"a-folder": tmp_path / "a-folder", "under-a-file": tmp_path / "a-file" / "r.md"}[where]
    assert main(["report", str(records), "--format", fmt, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"kdbench: error: cannot write {out}") and "Traceback" not in err


# ------------------------------------------------------------------ 6. records that inject

INJECTED_SHA = "abc\n\\input{/etc/passwd}\n\\write18{touch pwned}\n- **pwned**: yes"
INJECTED_LOSS = "kd|<script>alert(1)</script>"
INJECTED_STUDENT = "<img src=x onerror=alert(2)>"
FORMULA = '=HYPERLINK("http://x")'


def injecting_run(folder: Path) -> Path:
    """Records from a stranger: a git sha that ends the LaTeX comment and adds a Markdown
    bullet, a loss name with a pipe and a script, a student that is an image tag, a data set
    that is a spreadsheet formula, an error that spans lines."""
    path = folder / "stranger.jsonl"
    for seed in range(2):
        for loss, t in (("ce", None), ("kd", 4.0), ("mse_logits", None)):
            spec = make_spec("digits", "cnn_t", "cnn_s", loss, temperature=t, seed=seed, epochs=2)
            env = {"git_sha": INJECTED_SHA, "torch": "-2+3", "device_name": "@SUM(A1)"}
            status = "error" if loss == "mse_logits" else "ok"
            record = make_record(
                spec,
                status,
                {}
                if status == "error"
                else {
                    "top1": 90.0 + seed + (t or 0),
                    "val_top1": 89.0 + (t or 0),
                    "teacher_top1": 95.0,
                },
                env,
                **(
                    {"error": "boom\n| a | b |\n<script>alert(3)</script>"}
                    if status == "error"
                    else {}
                ),
            )
            if loss == "kd":
                record["spec"].update(loss=INJECTED_LOSS, student=INJECTED_STUDENT, dataset=FORMULA)
            append_record(path, record)
    return path


def report(tmp_path: Path, fmt: str) -> str:
    out = tmp_path / f"report.{fmt}"
    assert main(["report", str(injecting_run(tmp_path)), "--format", fmt, "--out", str(out)]) == 0
    return out.read_text()


UNESCAPED_PIPE = r"(?<!\\)\|"


def test_markdown_escapes_record_values(tmp_path):
    import re

    text = report(tmp_path, "md")
    assert "<script" not in text and "<img" not in text and "&lt;img src=x" in text
    assert not any(
        line.startswith(("- **pwned**", "\\input", "| a |")) for line in text.splitlines()
    ), text
    for table in re.findall(r"((?:^\|.*\n)+)", text, re.M):
        rows = table.splitlines()
        assert {len(re.findall(UNESCAPED_PIPE, row)) for row in rows} == {
            len(re.findall(UNESCAPED_PIPE, rows[0]))
        }, table
    assert "kd\\|&lt;script&gt;" in text


def test_html_escapes_record_values(tmp_path):
    text = report(tmp_path, "html")
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text


def test_csv_cells_never_start_a_formula(tmp_path):
    import csv
    import io

    rows = list(csv.reader(io.StringIO(report(tmp_path, "csv"))))
    header, body = rows[0], rows[1:]
    strings = [
        cell
        for row in body
        for name, cell in zip(header, row)
        if name in ("pair", "loss", "dataset", "note")
    ]
    assert strings and not [c for c in strings if c[:1] in ("=", "+", "-", "@")], strings
    assert f"'{FORMULA}" in strings


def test_latex_comments_and_cells_stay_inert(tmp_path):
    import re
    import shutil
    import subprocess

    text = report(tmp_path, "latex")
    head = text.split("\\begin{table}")[0]
    assert all(line.startswith("%") for line in head.splitlines()), head
    body = text[len(head) :]
    assert "\\input{" not in body and "<script>" not in body and "|<" not in body
    if not shutil.which("pdflatex"):
        pytest.skip(
            "pdflatex is not installed (apt-get install texlive-latex-base "
            "texlive-latex-recommended)"
        )
    (tmp_path / "paper.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        "\\input{report.latex}\n\\end{document}\n",
        encoding="utf-8",
    )
    run = subprocess.run(
        ["pdflatex", "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (tmp_path / "paper.log").read_text(encoding="latin-1")
    assert run.returncode == 0, log[-2000:]
    assert "/etc/passwd" not in log and not (tmp_path / "pwned").exists()
    assert re.search(r"Output written on paper\.pdf", log)


# ------------------------------------------------------------------ 7 and 8, in a session


def test_a_session_of_a_huge_profile_is_refused_before_collecting(kd_suite, pytester):
    pytester.makepyprojecttoml(huge_profile(pytester.path, 100_000).read_text())
    start = time.perf_counter()
    result = kd_suite("--kd-profile", "huge", "--kd-device", "cpu", "--collect-only", "-q")
    assert result.ret == USAGE_ERROR and time.perf_counter() - start < 20
    out = str(result.stdout) + str(result.stderr)
    (line,) = [line for line in out.splitlines() if "200,000 cases" in line]
    assert "--kd-max-cases" in line and "Traceback" not in out


def test_a_session_of_a_large_profile_says_its_size(kd_suite, pytester):
    pytester.makepyprojecttoml(huge_profile(pytester.path, 5_001).read_text())
    result = kd_suite("--kd-profile", "huge", "--kd-device", "cpu", "--collect-only", "-q")
    assert result.ret == 0
    (line,) = [line for line in result.outlines + result.errlines if "10,002 cases" in line]
    assert line.startswith("kdbench: warning:") and "no recorded durations" in line


def test_k_selecting_nothing_says_what_the_profile_offers(kd_suite):
    result = kd_suite("--kd-profile", "smoke", "--kd-device", "cpu", "-k", "resnet50")
    assert result.ret == int(pytest.ExitCode.NO_TESTS_COLLECTED)
    (line,) = [line for line in result.outlines if "-k 'resnet50' selects none" in line]
    assert "pairs: cnn_t/cnn_m;" in line and ", ce, " in line.split("losses: ")[1]
    assert "devices: cpu;" in line and "seeds: s0" in line


def test_a_session_uses_a_read_only_cache_that_holds_its_teacher(kd_suite, pytester, monkeypatch):
    cache = pytester.path / "cache"
    kd_suite(
        "--kd-profile",
        "smoke",
        "--kd-device",
        "cpu",
        "--kd-epochs",
        "2",
        "-k",
        "cnn_m-ce-",
        cache=cache,
    ).assert_outcomes(passed=1)
    read_only(monkeypatch, cache)
    result = kd_suite(
        "--kd-profile",
        "smoke",
        "--kd-device",
        "cpu",
        "--kd-epochs",
        "2",
        "-k",
        "cnn_m-kd-",
        cache=cache,
    )
    assert result.ret == 0 and "not writable" not in str(result.stdout), str(result.stdout)
    result.assert_outcomes(passed=1)
