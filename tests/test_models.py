"""The seed's examples for the experiment model, exactly, plus bad input and the rules beyond them."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pyexputils.errors import ConfigError, ExperimentError
from pyexputils.models import (
    Config,
    ExperimentDescription,
    FileSystemContext,
    getConfig,
    loadConfig,
    loadExperiment,
    setConfig,
)

SEED = {
    "algorithm": "SARSA",
    "environment": "MountainCar",
    "metaParameters": {
        "alpha": [1.0, 0.5, 0.25, 0.125],
        "lambda": [1.0, 0.99, 0.98, 0.96],
    },
}
SEED_CONFIG = Config(save_path="results/{name}/{environment}/{algorithm}/{params}")


def seed(**kw: Any) -> ExperimentDescription:
    return ExperimentDescription(SEED, config=kw.pop("config", SEED_CONFIG), **kw)


# --- seed examples --------------------------------------------------------------------------------
def test_permutable() -> None:
    # the seed's example: the sweep itself
    assert seed().permutable() == {"alpha": [1.0, 0.5, 0.25, 0.125], "lambda": [1.0, 0.99, 0.98, 0.96]}
    swept = seed().permutable()
    swept["alpha"].append(9.0)  # a copy: the description is left alone
    assert seed().permutable()["alpha"] == [1.0, 0.5, 0.25, 0.125]
    several = ExperimentDescription(dict(SEED, other={"beta": [1, 2]}), keys=["metaParameters", "other"],
                                    config=SEED_CONFIG)  # fmt: skip
    assert several.permutable() == {"metaParameters": SEED["metaParameters"], "other": {"beta": [1, 2]}}
    assert several.numPermutations() == 32


def test_getPermutation_seed_examples() -> None:
    exp = seed()
    assert exp.getPermutation(0) == {"alpha": 1.0, "lambda": 1.0}
    assert exp.getPermutation(1) == {"alpha": 1.0, "lambda": 0.99}
    assert exp.getPermutation(15) == {"alpha": 0.125, "lambda": 0.96}
    assert exp.getPermutation(16) == {"alpha": 1.0, "lambda": 1.0}


def test_numPermutations_and_getRun_seed_examples() -> None:
    exp = seed()
    assert exp.numPermutations() == 16
    assert exp.getRun(0) == 0
    assert exp.getRun(12) == 0
    assert exp.getRun(16) == 1
    assert exp.getRun(32) == 2


def test_getExperimentName_from_folder_and_key(tmp_path: Path) -> None:
    folder = tmp_path / "experiments" / "MountainCar-v0"
    folder.mkdir(parents=True)
    path = folder / "sarsa.json"
    path.write_text(json.dumps(SEED))
    config = Config(experiment_directory=str(tmp_path / "experiments"))
    assert ExperimentDescription(SEED, str(path), config=config).getExperimentName() == "MountainCar-v0"
    named = dict(SEED, name="mc-sweep")
    assert ExperimentDescription(named, str(path), config=config).getExperimentName() == "mc-sweep"


def test_getExperimentName_relative_path_in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.makedirs("experiments/MountainCar-v0")
    Path("experiments/MountainCar-v0/sarsa.json").write_text(json.dumps(SEED))
    setConfig(None)
    exp = loadExperiment("experiments/MountainCar-v0/sarsa.json")
    assert exp.getExperimentName() == "MountainCar-v0"
    assert exp.getFileName() == "sarsa"


def test_interpolateSavePath_seed_example(tmp_path: Path) -> None:
    folder = tmp_path / "experiments" / "MountainCar-v0"
    folder.mkdir(parents=True)
    config = Config(
        save_path="results/{name}/{algorithm}/{params}", experiment_directory=str(tmp_path / "experiments")
    )
    exp = ExperimentDescription(SEED, str(folder / "sarsa.json"), config=config)
    assert exp.interpolateSavePath(0) == "results/MountainCar-v0/SARSA/alpha-1.0_lambda-1.0"
    assert exp.interpolateSavePath(1) == "results/MountainCar-v0/SARSA/alpha-1.0_lambda-0.99"


def test_buildSaveContext_seed_example(tmp_path: Path) -> None:
    config = Config(save_path="results/{name}/{algorithm}/{params}")
    exp = ExperimentDescription(dict(SEED, name="MountainCar-v0"), config=config)
    ctx = exp.buildSaveContext(0, base=str(tmp_path))
    ctx.ensureExists()
    path = ctx.resolve("returns.npy")
    assert path == str(tmp_path / "results/MountainCar-v0/SARSA/alpha-1.0_lambda-1.0/returns.npy")
    assert os.path.isdir(os.path.dirname(path))


def test_hours_and_gigs() -> None:
    from pyexputils.runner import gigs, hours

    assert hours(3) == "2:59:59"
    assert hours(1) == "0:59:59"
    assert gigs(4) == "4G"
    for bad in (0, -1, 1.5, "3", True, None):
        with pytest.raises(ValueError, match="whole number"):
            hours(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="whole number"):
            gigs(bad)  # type: ignore[arg-type]


# --- structure --------------------------------------------------------------------------------------
def test_fixed_scalars_nested_dicts_lists_of_dicts_and_lists_of_lists() -> None:
    d = {
        "metaParameters": {
            "epsilon": 0.1,
            "optimizer": {"name": "adam", "alpha": [0.1, 0.01]},
            "layers": [{"units": [32, 64]}, {"units": 16}],
            "hidden": [[4, 64], [8, 64]],
        }
    }
    exp = ExperimentDescription(d, config=Config())
    assert exp.numPermutations() == 8
    assert exp.getPermutation(0) == {
        "epsilon": 0.1,
        "optimizer": {"name": "adam", "alpha": 0.1},
        "layers": [{"units": 32}, {"units": 16}],
        "hidden": [4, 64],
    }
    # the last parameter (hidden) varies fastest, then layers.[0].units, then optimizer.alpha
    assert exp.getPermutation(1)["hidden"] == [8, 64]
    assert exp.getPermutation(2)["layers"][0]["units"] == 64
    assert exp.getPermutation(4)["optimizer"]["alpha"] == 0.01
    # same set of settings as the product of the swept lists
    seen = {json.dumps(exp.getPermutation(i), sort_keys=True) for i in range(8)}
    assert len(seen) == 8


def test_returned_dicts_are_fresh() -> None:
    exp = ExperimentDescription({"metaParameters": {"h": [[1, 2], [3]], "a": [1, 2]}}, config=Config())
    p = exp.getPermutation(0)
    p["h"].append(99)
    p["a"] = "changed"
    assert exp.getPermutation(0) == {"h": [1, 2], "a": 1}


def test_huge_sweep_is_instant() -> None:
    d = {"metaParameters": {f"p{i}": list(range(10)) for i in range(12)}}
    exp = ExperimentDescription(d, config=Config())
    assert exp.numPermutations() == 10**12
    assert exp.getPermutation(10**12 - 1) == {f"p{i}": 9 for i in range(12)}
    assert exp.getPermutation(123_456_789_012) == {f"p{i}": int(c) for i, c in enumerate("123456789012")}
    assert exp.getRun(3 * 10**12 + 5) == 3


def test_params_string_is_key_sorted() -> None:
    a = ExperimentDescription({"metaParameters": {"lambda": [0.9], "alpha": [0.5]}}, config=Config())
    b = ExperimentDescription({"metaParameters": {"alpha": [0.5], "lambda": [0.9]}}, config=Config())
    assert a.paramsString(0) == b.paramsString(0) == "alpha-0.5_lambda-0.9"


def test_default_save_path_has_name_file_params_run(tmp_path: Path) -> None:
    path = tmp_path / "experiments" / "env" / "agent.json"
    exp = ExperimentDescription(
        {"metaParameters": {"a": [1, 2]}}, str(path), config=Config(experiment_directory=str(tmp_path / "experiments"))
    )
    assert exp.interpolateSavePath(3) == "results/env/agent/a-2/1"


# --- bad input ----------------------------------------------------------------------------------------
def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '{\n  "metaParameters": {\n    "a": [1, 2,]\n  }\n}\n')
    with pytest.raises(ExperimentError, match=r"bad\.json: line 3 .*malformed JSON"):
        loadExperiment(path)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "metaParameters:\n  a: [1, 2\n  b: 3\n")
    with pytest.raises(ExperimentError, match=r"bad\.yaml: line \d+ .*malformed YAML"):
        loadExperiment(path)


def test_yaml_and_json_load_the_same(tmp_path: Path) -> None:
    j = write(tmp_path, "e.json", json.dumps(SEED))
    y = write(
        tmp_path,
        "e.yaml",
        "algorithm: SARSA\nenvironment: MountainCar\nmetaParameters:\n"
        "  alpha: [1.0, 0.5, 0.25, 0.125]\n  lambda: [1.0, 0.99, 0.98, 0.96]\n",
    )
    ej, ey = loadExperiment(j), loadExperiment(y)
    assert [ej.getPermutation(i) for i in range(16)] == [ey.getPermutation(i) for i in range(16)]


def test_missing_metaParameters(tmp_path: Path) -> None:
    path = write(tmp_path, "e.json", '{"algorithm": "x"}')
    with pytest.raises(ExperimentError, match=r"e\.json: missing key 'metaParameters'"):
        loadExperiment(path)


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "e.json", "[1, 2]")
    with pytest.raises(ExperimentError, match=r"e\.json: expected a mapping"):
        loadExperiment(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match=r"nope\.json: cannot read"):
        loadExperiment(str(tmp_path / "nope.json"))


def test_empty_list_names_key(tmp_path: Path) -> None:
    path = write(tmp_path, "e.json", '{"metaParameters": {"opt": {"alpha": []}}}')
    with pytest.raises(ExperimentError, match=r"e\.json: opt\.alpha is an empty list"):
        loadExperiment(path)


def test_unknown_placeholder_names_config_and_key(tmp_path: Path) -> None:
    config = Config(save_path="results/{agent}/{params}", path="config.json")
    exp = ExperimentDescription({"metaParameters": {"a": [1]}}, "e.json", config=config)
    with pytest.raises(ExperimentError, match=r"config\.json .*placeholder \{agent\} names no key of e\.json"):
        exp.interpolateSavePath(0)


def test_unmatched_brace(tmp_path: Path) -> None:
    exp = ExperimentDescription({"metaParameters": {"a": [1]}}, config=Config(save_path="results/{params"))
    with pytest.raises(ExperimentError, match="unmatched brace"):
        exp.interpolateSavePath(0)


def test_run_missing_from_save_path_with_several_runs() -> None:
    exp = ExperimentDescription({"metaParameters": {"a": [1, 2]}}, config=Config(save_path="results/{params}"))
    exp.validateSavePath(runs=1)
    with pytest.raises(ExperimentError, match=r"has no \{run\} but 3 runs"):
        exp.validateSavePath(runs=3)


def test_params_missing_from_save_path_with_a_sweep() -> None:
    exp = ExperimentDescription({"metaParameters": {"a": [1, 2]}}, config=Config(save_path="results/{run}"))
    with pytest.raises(ExperimentError, match=r"has no \{params\}"):
        exp.validateSavePath(runs=1)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_bad_index(bad: Any) -> None:
    exp = seed()
    with pytest.raises(ExperimentError, match="index"):
        exp.getPermutation(bad)
    with pytest.raises(ExperimentError, match="index"):
        exp.interpolateSavePath(bad)


def test_index_out_of_range_for_runs() -> None:
    exp = seed()
    assert exp.checkIndex(47, runs=3) == 47
    with pytest.raises(ExperimentError, match=r"index 48 is out of range: 16 settings x 3 runs gives indices 0-47"):
        exp.checkIndex(48, runs=3)


def test_numpy_integers_are_indices() -> None:
    np = pytest.importorskip("numpy")
    assert seed().getPermutation(np.int64(1)) == {"alpha": 1.0, "lambda": 0.99}


@pytest.mark.parametrize("value", ["../../etc", "a/../..", ".."])
def test_value_escaping_results_folder(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "e.json", json.dumps({"metaParameters": {"env": ["ok", value]}}))
    with pytest.raises(ExperimentError, match=r"e\.json: env = .* would escape the results folder"):
        loadExperiment(path)


def test_top_level_value_escaping_results_folder() -> None:
    exp = ExperimentDescription(
        {"agent": "../x", "metaParameters": {"a": [1]}}, config=Config(save_path="results/{agent}/{params}")
    )
    with pytest.raises(ExperimentError, match="agent = '../x' would escape"):
        exp.interpolateSavePath(0)


def test_values_that_print_the_same_collide() -> None:
    with pytest.raises(ExperimentError, match="a lists the value '1' twice"):
        ExperimentDescription({"metaParameters": {"a": [1, "1"]}}, config=Config())


# --- config ----------------------------------------------------------------------------------------------
def test_config_defaults_and_file(tmp_path: Path) -> None:
    assert loadConfig(str(tmp_path)) == Config()
    (tmp_path / "config.json").write_text(
        json.dumps({"save_path": "out/{params}", "log_path": "logs", "require": "returns.npy", "slurm": {"time": "1:00:00"}})
    )
    c = loadConfig(str(tmp_path))
    assert (c.save_path, c.log_path, c.require, c.slurm) == ("out/{params}", "logs", ["returns.npy"], {"time": "1:00:00"})
    assert c.results_root == "out"
    assert c.experiment_directory == "experiments"


def test_config_yaml(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("save_path: r/{name}/{params}/{run}\ncommand: python main.py {index}\n")
    c = loadConfig(str(tmp_path))
    assert c.save_path == "r/{name}/{params}/{run}"
    assert c.command == "python main.py {index}"
    assert c.results_root == "r"


@pytest.mark.parametrize(
    "d, match",
    [
        ({"save_pth": "x"}, "unknown key 'save_pth'"),
        ({"save_path": ""}, "save_path must be a non-empty string"),
        ({"require": [1]}, "require must be a list of file names"),
        ({"require": ["a/b"]}, "require must be a list of file names"),
        ({"slurm": "x"}, "slurm must be a mapping"),
        ({"backend": ""}, "backend must be auto, slurm or local"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path: Path, d: dict[str, Any], match: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"config\.json: " + match):
        loadConfig(str(tmp_path))


def test_getConfig_reads_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    setConfig(None)
    (tmp_path / "config.json").write_text('{"save_path": "first/{params}"}')
    assert getConfig().save_path == "first/{params}"
    (tmp_path / "config.json").write_text('{"save_path": "second/{params}"}')
    assert getConfig().save_path == "first/{params}"
    setConfig(None)
    assert getConfig().save_path == "second/{params}"
    setConfig(None)


# --- FileSystemContext ------------------------------------------------------------------------------------
def test_file_system_context(tmp_path: Path) -> None:
    ctx = FileSystemContext("results/a", str(tmp_path))
    assert ctx.getBase() == str(tmp_path)
    assert ctx.resolve() == str(tmp_path / "results/a")
    assert ctx.resolve("x.npy") == str(tmp_path / "results/a/x.npy")
    assert ctx.resolve("../b.txt") == str(tmp_path / "results/b.txt")
    assert not ctx.exists()
    assert ctx.ensureExists("sub/file.txt", is_file=True) == str(tmp_path / "results/a/sub/file.txt")
    assert (tmp_path / "results/a/sub").is_dir()
    assert ctx.exists("sub")
    ctx.remove("sub")
    assert not ctx.exists("sub")
    ctx.remove()
    assert not ctx.exists()
