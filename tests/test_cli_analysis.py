"""`pyexputils plot` and `pyexputils table` on a small project with results on disk: files written, output,
--json, and bad input as one line with exit 2 (never a traceback)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyexputils.cli import main
from pyexputils.models import loadExperiment, setConfig
from pyexputils.results import listIndices, saveResult

PNG = b"\x89PNG\r\n\x1a\n"
EXPS = ["experiments/rw/td.json", "experiments/rw/totd.json"]
CURVE = np.linspace(1.0, 0.0, 10)  # every run's curve, shifted by alpha + lambda (+ 0.5 for TOTD) + 0.1 x run
HALF = float(CURVE[-5:].mean())  # its mean over the last half


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two agents over alpha x lambda, 2 runs of 10 steps each; TD's alpha 0.1 / lambda 0.9 has no runs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"save_path": "results/{name}/{file}/{params}/{run}"}))
    (tmp_path / "experiments" / "rw").mkdir(parents=True)
    for agent, file in (("TD", "td"), ("TOTD", "totd")):
        d = {"agent": agent, "metaParameters": {"alpha": [0.4, 0.1], "lambda": [0.0, 0.9]}}
        (tmp_path / "experiments" / "rw" / f"{file}.json").write_text(json.dumps(d))
    setConfig(None)
    for path in EXPS:
        exp = loadExperiment(path)
        for i in listIndices(exp, runs=2):
            p = exp.getPermutation(i)
            if "td.json" in path and p == {"alpha": 0.1, "lambda": 0.9}:
                continue
            level = p["alpha"] + p["lambda"] + (0.5 if "totd" in path else 0.0) + 0.1 * exp.getRun(i)
            saveResult(exp.buildSaveContext(i), "err.npy", CURVE + level)
    yield tmp_path
    setConfig(None)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# --- plot -------------------------------------------------------------------------------------------------------
def test_plot_everything_by_default(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plot", *EXPS, "--file", "err.npy", "--out", "plots")
    assert code == 0, err
    assert out.splitlines() == [
        "TD: best alpha=0.1, lambda=0.0 (2 runs)",
        "TOTD: best alpha=0.1, lambda=0.0 (2 runs)",
        "wrote plots/curves.png",
        "wrote plots/sensitivity.png",
    ]
    for name in ("curves.png", "sensitivity.png"):
        data = (project / "plots" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    assert "getBest: 1 of 4 settings have no runs and were left out" in err


def test_plot_best_only_and_param_only(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plot", *EXPS, "--file", "err.npy", "--best", "--out", "a")
    assert code == 0 and sorted(os.listdir("a")) == ["curves.png"] and "wrote a/curves.png" in out
    code, out, _ = run(capsys, "plot", EXPS[0], "--file", "err.npy", "--param", "lambda", "--out", "b")
    assert code == 0 and sorted(os.listdir("b")) == ["sensitivity.png"] and out == "wrote b/sensitivity.png\n"


def test_plot_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plot", *EXPS, "--file", "err.npy", "--larger", "--last", "0.5", "--json", "--out", "p")
    assert code == 0
    data = json.loads(out)
    assert data["files"] == ["p/curves.png", "p/sensitivity.png"]
    assert data["best"]["TD"] == {"params": {"alpha": 0.4, "lambda": 0.9}, "runs": 2, "final": pytest.approx(1.35)}
    td = data["sensitivity"]["lambda"]["TD"]
    assert td["values"] == [0.0, 0.9] and td["runs"] == [2, 2]
    assert td["scores"] == pytest.approx([0.4 + 0.05 + HALF, 0.4 + 0.9 + 0.05 + HALF])  # largest over alpha
    alpha = data["sensitivity"]["alpha"]["TD"]
    assert alpha["values"] == [0.1, 0.4] and alpha["scores"][0] == pytest.approx(0.1 + 0.05 + HALF)  # no lambda 0.9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--file", "nope.npy"], "pyexputils: error: experiments/rw/td.json: no setting has a nope.npy yet (the first "
                                 "would be results/rw/td/alpha-0.4_lambda-0.0/0/nope.npy)"),
        (["--file", "err.npy", "--param", "lamda"],
         "pyexputils: error: no result has a parameter 'lamda'; closest: lambda (parameters: alpha, lambda)"),
        (["--file", "../err.npy"],
         "pyexputils: error: --file '../err.npy': expected the name of a file inside each run's folder"),
    ],
)
def test_plot_bad_input_is_one_line(project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, out, err = run(capsys, "plot", *EXPS, *args, "--out", "plots")
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == message
    assert not (project / "plots").exists()


def test_plot_missing_experiment_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plot", "experiments/rw/nope.json", "--file", "err.npy", "--out", "plots")
    assert code == 2 and err.startswith("pyexputils: error: experiments/rw/nope.json: cannot read")


def test_plot_without_matplotlib(project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, "plot", *EXPS, "--file", "err.npy", "--out", "plots")
    assert code == 2 and err == "pyexputils: error: plots need matplotlib: pip install 'pyexputils[plot]'\n"


# --- table --------------------------------------------------------------------------------------------------------
def test_table_text(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "table", EXPS[0], "--file", "err.npy")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 5
    assert lines[0].split() == ["alpha", "lambda", "runs", "mean", "stderr", "last_mean", "last_stderr"]
    assert lines[1].split() == ["0.4", "0", "2", "0.95", "0.05", "0.45", "0.05"]  # last 10 %: the final 0
    assert lines[4].split() == ["0.1", "0.9", "0", "nan", "nan", "nan", "nan"]


def test_table_csv_file_and_stdout(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "table", *EXPS, "--file", "err.npy", "--last", "0.5", "--out", "t.csv")
    assert code == 0 and out == "wrote t.csv (8 settings)\n"
    text = (project / "t.csv").read_text()
    lines = text.splitlines()
    assert lines[0] == "experiment,alpha,lambda,runs,mean,stderr,last_mean,last_stderr" and len(lines) == 9
    first = lines[1].split(",")
    assert first[:4] == ["TD", "0.4", "0.0", "2"] and float(first[6]) == pytest.approx(0.4 + HALF + 0.05)
    code, out, _ = run(capsys, "table", *EXPS, "--file", "err.npy", "--last", "0.5", "--out", "-")
    assert code == 0 and out == text


def test_table_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "table", *EXPS, "--file", "err.npy", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 8
    assert rows[3] == {"experiment": "TD", "alpha": 0.1, "lambda": 0.9, "runs": 0, "mean": None, "stderr": None,
                       "last_mean": None, "last_stderr": None}  # fmt: skip
    assert rows[4]["experiment"] == "TOTD" and rows[4]["runs"] == 2 and rows[4]["mean"] == pytest.approx(0.4 + 0.5 + 0.55)


def test_table_runs_fixed(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "table", EXPS[0], "--file", "err.npy", "--runs", "3", "--json")
    assert code == 0 and [r["runs"] for r in json.loads(out)] == [2, 2, 2, 0]
    assert "cannot load 1 of 3 runs" in err  # run 2 was asked for and is missing


@pytest.mark.parametrize("args", [["--last", "0"], ["--last", "x"], ["--runs", "0"]])
def test_table_bad_options_exit_2(project: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["table", EXPS[0], "--file", "err.npy", *args])
    assert e.value.code == 2 and "error: argument" in capsys.readouterr().err


def test_table_unwritable_out(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "table", EXPS[0], "--file", "err.npy", "--out", "no/such/t.csv")
    assert code == 2 and err == "pyexputils: error: no/such/t.csv: cannot write the table: no folder no/such\n"


def test_as_a_process_no_traceback(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    bad = subprocess.run([sys.executable, "-m", "pyexputils", "table", EXPS[0], "--file", "typo.npy"],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "pyexputils: error: experiments/rw/td.json: no setting has a typo.npy yet "
        "(the first would be results/rw/td/alpha-0.4_lambda-0.0/0/typo.npy)"
    ]
    good = subprocess.run([sys.executable, "-m", "pyexputils", "plot", *EXPS, "--file", "err.npy", "--out", "out"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert good.returncode == 0 and "wrote out/curves.png" in good.stdout
    assert (project / "out" / "curves.png").read_bytes().startswith(PNG)
