"""Building the shell command of one index (pyexputils.runner.command)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.errors import ConfigError
from pyexputils.models import Config, ExperimentDescription
from pyexputils.runner.command import buildCommand, checkCommand, directArgv, placeholderNames, placeholders, render, shellArgv

CONFIG = Config(save_path="results/{name}/{params}/{run}", path="config.json")
# a program that prints its arguments as JSON: what the user's program would receive
ECHO = f"{shlex.quote(sys.executable)} -c 'import json,sys; print(json.dumps(sys.argv[1:]))'"


def exp(d: dict | None = None, path: str = "experiments/demo/sarsa.json") -> ExperimentDescription:
    d = d or {"agent": "SARSA", "metaParameters": {"alpha": [1.0, 0.5], "lambda": [0.9, 0.8, 0.7]}}
    return ExperimentDescription(d, path=path, config=CONFIG)


def runArgs(command: str, cwd: str | None = None) -> list[str]:
    out = subprocess.run(shellArgv(command), capture_output=True, text=True, check=True, cwd=cwd)
    result: list[str] = json.loads(out.stdout)
    return result


# --- rendering ---------------------------------------------------------------------------------------


def test_seed_example() -> None:
    cmd = buildCommand("python main.py --exp {experiment} --idx {index}", exp(), 4, "/p/experiments/sarsa.json")
    assert cmd == "python main.py --exp /p/experiments/sarsa.json --idx 4"


def test_all_special_placeholders() -> None:
    e = exp()
    v = placeholders(e, 7)  # 6 settings: run 1, perm 1 -> alpha 1.0, lambda 0.8
    assert v["index"] == "7" and v["run"] == "1" and v["perm"] == "1"
    assert v["params"] == "alpha-1.0_lambda-0.8"
    assert v["experiment"] == "experiments/demo/sarsa.json"
    assert v["name"] == "demo" and v["file"] == "sarsa"
    assert v["agent"] == "SARSA"
    assert v["alpha"] == "1.0" and v["lambda"] == "0.8"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["{index}", "{run}", "{params}", "{name}", "{agent}", "{alpha}", "{{", "}}", "${HOME}",
                                 "$PYX_SAVE_PATH", " --x ", "'q'"]), max_size=6), st.integers(0, 11))  # fmt: skip
def test_every_template_renders_as_with_every_placeholder_known(parts: list[str], index: int) -> None:
    # buildCommand looks up only what a template names (nothing for a $PYX_* command): same text as the full table
    e, template = exp(), "run " + "".join(parts)
    assert buildCommand(template, e, index) == render(template, placeholders(e, index), "config.json")


def test_params_placeholder_matches_save_path() -> None:
    e = exp()
    for i in range(12):
        assert placeholders(e, i)["params"] in e.interpolateSavePath(i)


def test_nested_and_list_values() -> None:
    e = exp(
        {
            "env": {"name": "chain", "size": 5},
            "metaParameters": {
                "optimizer": {"name": "adam", "beta": [0.9, 0.99]},
                "layers": [{"units": [32, 64]}, {"units": 16}],
                "hidden": [[4, 64], [8, 64]],
            },
        }
    )
    v = placeholders(e, 0)
    assert v["env"] == '{"name":"chain","size":5}'
    assert v["optimizer.beta"] == "0.9" and v["optimizer.name"] == "adam"
    assert v["layers.[0].units"] == "32" and v["layers.[1].units"] == "16"
    assert v["hidden"] == "[4,64]"
    assert json.loads(v["optimizer"]) == {"name": "adam", "beta": 0.9}


def test_special_names_win_over_keys_and_parameters() -> None:
    e = exp({"index": "top", "metaParameters": {"run": [5, 6], "agent": ["a"]}, "agent": "top-agent"})
    v = placeholders(e, 1)
    assert v["index"] == "1" and v["run"] == "0"
    assert v["agent"] == "top-agent"  # top-level keys win over parameters


def test_list_of_sweep_keys() -> None:
    e = ExperimentDescription(
        {"a": {"x": [1, 2]}, "b": {"y": [3, 4]}}, path="e.json", keys=["a", "b"], config=CONFIG
    )
    v = placeholders(e, 3)
    assert v["a.x"] == "2" and v["b.y"] == "4"


def test_escapes_and_shell_expansions_are_left_alone() -> None:
    assert render("echo {{a}} ${HOME} ${X:-y} {i}", {"i": "1"}) == "echo {a} ${HOME} ${X:-y} 1"
    assert placeholderNames("a {x} ${Y} {{z}} {w}") == ["x", "w"]


def test_values_are_quoted() -> None:
    assert render("run {v}", {"v": "a b"}) == "run 'a b'"
    assert render("run {v}", {"v": ""}) == "run ''"
    assert render("run {v}", {"v": "plain"}) == "run plain"


def test_unknown_placeholder_names_config_and_key() -> None:
    with pytest.raises(ConfigError) as err:
        buildCommand("python main.py --seed {seed}", exp(), 0)
    msg = str(err.value)
    assert msg.startswith("config.json:") and "{seed}" in msg and "experiments/demo/sarsa.json" in msg
    assert "known:" in msg and "index" in msg


def test_check_command() -> None:
    checkCommand("python main.py {index} {alpha}", exp())
    with pytest.raises(ConfigError, match="nope"):
        checkCommand("python main.py {nope}", exp(), where="my/config.yaml")


@pytest.mark.parametrize("template", ["echo {index", "echo index}", "echo ${HOME", "echo {a{b}}"])
def test_unmatched_braces(template: str) -> None:
    with pytest.raises(ConfigError, match="unmatched"):
        render(template, {"index": "1", "a": "x", "b": "y"}, where="config.json")


# --- through a real shell ------------------------------------------------------------------------------

NASTY = [
    "a b",
    "it's",
    'say "hi"',
    "$(touch PWNED)",
    "`touch PWNED`",
    "; touch PWNED",
    "x && touch PWNED",
    "$HOME ${HOME}",
    "\\n\\t\\",
    "*",
    "-n",
    "new\nline",
    "{index}",
    "",
    "ünïcödé ✓",
]


@pytest.mark.parametrize("value", NASTY)
def test_nasty_parameter_value_reaches_the_program_intact(value: str, tmp_path: str) -> None:
    e = exp({"agent": value, "metaParameters": {"alpha": [0.5], "note": [value or "-"]}})
    cmd = buildCommand(ECHO + " {agent} --note {note} --idx {index}", e, 0)
    assert runArgs(cmd, cwd=str(tmp_path)) == [value, "--note", value or "-", "--idx", "0"]
    assert os.listdir(tmp_path) == []  # nothing ran: no PWNED file


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_any_string_round_trips_through_bash(value: str) -> None:
    cmd = render(ECHO + " {v} {v}", {"v": value})
    assert runArgs(cmd) == [value, value]


# --- starting a command without a shell ------------------------------------------------------------------

_plainWord = st.text("abcXYZ019_./:=,@%+-", min_size=1, max_size=6)
_single = st.text("ab $\"*;|&<>()~`\\!#{} ", max_size=6).filter(lambda s: "'" not in s).map(lambda s: f"'{s}'")
_double = st.lists(st.one_of(st.text("ab '*;|&<>()~#{} ", min_size=1, max_size=4), st.sampled_from(["$A", "${A}", "$B_2", "${UNSET}"])),
                   max_size=3).map(lambda parts: '"' + "".join(parts) + '"')  # fmt: skip
_word = st.lists(st.one_of(_plainWord, _single, _double), min_size=1, max_size=3).map("".join)
_other = st.sampled_from(["$A", "*", "a*b", "~/x", "a;b", "x|y", "> f", "`id`", "$(id)", "a\\ b", "{a,b}", "#c", "!x", "&"])
ARGV_PRINTER = "import json, sys; print(json.dumps(sys.argv[1:]))"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_word.map(lambda w: (w, False)), _other.map(lambda w: (w, True))), max_size=5), st.sampled_from([" ", "  ", "\t"]))
def test_a_direct_start_gets_the_argv_bash_would_give(tmp_path_factory: pytest.TempPathFactory, words: list[tuple[str, bool]], gap: str) -> None:
    printer = tmp_path_factory.mktemp("bin") / "argv"
    printer.write_text(f"#!{sys.executable}\n{ARGV_PRINTER}\n")
    printer.chmod(0o755)
    command = gap.join([str(printer), *(w for w, _ in words)])
    env = {**os.environ, "A": "1 2", "B_2": "*"}
    env.pop("UNSET", None)
    argv = directArgv(command, env)
    assert (argv is None) == any(needsShell for _, needsShell in words)  # bash for what needs the shell, only
    if argv is None:
        return
    byBash = json.loads(subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, check=True).stdout)
    assert argv == [str(printer), *byBash]


@pytest.mark.parametrize(
    "command",
    ["echo hi", "true", "cd /tmp", "a=1 python x", "python x > out", "python $A", "ls *.py", "~/x", "python x; y",
     "python x | y", "python 'a'\\''b'", "python $(id)", "", "   ", "time python x", "export A=1", "python x &",
     'python "$PWD"', 'python "${RANDOM}"', 'python "$SHLVL"', 'python "$BASH_VERSION"', "python x \"$HOSTNAME\""],
)  # fmt: skip
def test_what_needs_the_shell_goes_to_bash(command: str) -> None:
    assert directArgv(command, {}) is None


def test_an_exported_bash_function_sends_every_command_to_bash() -> None:
    assert directArgv("python x", {"BASH_FUNC_python%%": "() { echo hi; }"}) is None
    assert directArgv("python x", {}) == ["python", "x"]
