"""The shell command of one index: config ``command`` with its placeholders filled in, shell-quoted (pure).

``python main.py --exp {experiment} --idx {index}`` becomes
``python main.py --exp /abs/experiments/sarsa.json --idx 17``. Placeholders, first match wins:

- ``{experiment}``: the experiment file's path; ``{index}``, ``{run}``, ``{perm}`` (the setting number),
  ``{params}`` (as in save paths: ``alpha-0.5_lambda-0.9``), ``{name}``, ``{file}``;
- every top-level key of the experiment description (``{agent}``); a dict or list value is given as JSON;
- every swept or fixed parameter of the index by its dotted name (``{alpha}``, ``{optimizer.beta}``,
  ``{layers.[0].units}``), the value taken by this index.

Every value is quoted with ``shlex.quote``: it reaches the program as one argument, whatever it holds
(blanks, quotes, ``$(...)``), and runs nothing. Do not put quotes around placeholders yourself. ``{{`` and
``}}`` are literal braces, and ``${...}`` is left to the shell (``${HOME}``). An unknown placeholder is a
:class:`ConfigError` naming the config file and the key. The command is run with ``bash -c`` (``sh -c``
when there is no bash) in the project folder.
"""
from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
from typing import Any, Mapping

from pyexputils.errors import ConfigError
from pyexputils.models import ExperimentDescription
from pyexputils.models.sweep import pathName

# ``{{``, ``}}``, ``${`` (left alone) or ``{name}``; a lone brace is matched last, to be reported
_TOKEN = re.compile(r"\{\{|\}\}|\$\{|\{([^{}]*)\}|[{}]")
SPECIAL = ("experiment", "index", "run", "perm", "params", "name", "file")


def placeholderNames(template: str, where: str = "config") -> list[str]:
    """The placeholder names used in ``template``, in order; raises on an unmatched brace."""
    names: list[str] = []
    shellDepth = 0
    for m in _TOKEN.finditer(template):
        text = m.group(0)
        if text == "${":
            shellDepth += 1
        elif text == "}" and shellDepth > 0:
            shellDepth -= 1
        elif text in ("{", "}"):
            raise ConfigError(
                f"{where}: command {template!r} has an unmatched {text!r} at column {m.start() + 1} "
                "(write {{ or }} for a literal brace)"
            )
        elif m.group(1) is not None:
            if shellDepth > 0:
                continue
            names.append(m.group(1))
    if shellDepth > 0:
        raise ConfigError(f"{where}: command {template!r} has an unmatched '${{'")
    return names


def render(template: str, values: Mapping[str, str], where: str = "config", source: str = "") -> str:
    """``template`` with every ``{name}`` replaced by ``shlex.quote(values[name])``.

    ``where`` names the config file in errors, ``source`` the experiment whose keys were looked up.
    """
    out: list[str] = []
    pos = 0
    shellDepth = 0
    for m in _TOKEN.finditer(template):
        out.append(template[pos : m.start()])
        pos = m.end()
        text, name = m.group(0), m.group(1)
        if text == "${":
            shellDepth += 1
            out.append(text)
        elif text == "}" and shellDepth > 0:
            shellDepth -= 1
            out.append(text)
        elif text in ("{{", "}}"):
            out.append(text[0])
        elif name is not None and shellDepth > 0:
            out.append(text)
        elif name is not None:
            if name not in values:
                of = f" of {source}" if source else ""
                raise ConfigError(
                    f"{where}: command placeholder {{{name}}} names no key{of}; "
                    f"known: {', '.join(sorted(values))}"
                )
            out.append(shlex.quote(values[name]))
        else:
            placeholderNames(template, where)  # raises the unmatched-brace error
    out.append(template[pos:])
    if shellDepth > 0:
        placeholderNames(template, where)
    return "".join(out)


def _text(value: Any) -> str:
    """A value as the program receives it: strings as they are, dicts and lists as JSON, else ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _flatten(prefix: tuple[str | int, ...], value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(prefix + (k,), v, out)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for i, v in enumerate(value):
            _flatten(prefix + (i,), v, out)
    if prefix:
        out.setdefault(pathName(prefix), _text(value))


def _special(exp: ExperimentDescription, index: int, experiment: str | None) -> dict[str, str]:
    perm = index % exp.numPermutations()
    return {
        "experiment": experiment if experiment is not None else (exp.path or ""),
        "index": str(index),
        "run": str(exp.getRun(index)),
        "perm": str(perm),
        "params": exp.paramsString(perm),
        "name": exp.getExperimentName(),
        "file": exp.getFileName(),
    }


def placeholders(exp: ExperimentDescription, index: int, experiment: str | None = None) -> dict[str, str]:
    """Every placeholder value of ``index`` (unquoted), by name; see the module docstring."""
    values = _special(exp, index, experiment)
    for key, value in exp.description.items():
        values.setdefault(str(key), _text(value))
    params: dict[str, str] = {}
    permutation = exp.getPermutation(index)
    roots = exp.getKeys()
    # one sweep key (the usual metaParameters): its parameters by their own names
    _flatten((), permutation[roots[0]] if isinstance(exp.keys, list) and len(roots) == 1 else permutation, params)
    for key, value in params.items():
        values.setdefault(key, value)
    return values


def buildCommand(
    template: str, exp: ExperimentDescription, index: int, experiment: str | None = None, where: str | None = None
) -> str:
    """The shell command of ``index``: ``template`` (config ``command``) with placeholders filled, quoted."""
    source = exp.path or "the experiment"
    where = where or exp.config.path or "config"
    names = placeholderNames(template, where)
    if not names:  # the usual $PYX_* command: nothing to look up (a run's start is this much cheaper)
        return render(template, {}, where, source)
    if all(n in SPECIAL for n in names):
        return render(template, _special(exp, index, experiment), where, source)
    return render(template, placeholders(exp, index, experiment), where, source)


def checkCommand(template: str, exp: ExperimentDescription, where: str | None = None) -> None:
    """Raise the error :func:`buildCommand` would raise for ``template`` (checks index 0): for submit."""
    buildCommand(template, exp, 0, where=where)


# a word of a command that needs nothing of the shell: plain characters, '...', or "..." with only $NAME/${NAME}
_PLAIN = r"[A-Za-z0-9_./:=,@%+-]"
_DOUBLE = r'"(?:[^"$`\\!]|\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*\})*"'
_WORD = re.compile(rf"(?:{_PLAIN}+|'[^']*'|{_DOUBLE})+")
_VAR = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")
_BLANKS = re.compile(r"[ \t]+")
# bash's builtins and keywords: a command starting with one of these goes to bash
SHELL_WORDS = frozenset(
    ". : [ alias bg bind break builtin caller cd command compgen complete compopt continue declare dirs disown echo "
    "enable eval exec exit export false fc fg getopts hash help history jobs kill let local logout mapfile popd "
    "printf pushd pwd read readarray readonly return set shift shopt source suspend test times trap true type "
    "typeset ulimit umask unalias unset wait if then else elif fi case esac for select while until do done in "
    "function time { } ! [[ ]] coproc".split()
)
# variables bash sets itself (``$RANDOM``, ``$PWD`` of the folder it runs in, ...): a command naming one goes to bash
BASH_VARIABLES = frozenset(
    "BASHOPTS BASHPID DIRSTACK EPOCHREALTIME EPOCHSECONDS EUID FUNCNAME GROUPS HOSTNAME HOSTTYPE IFS LINENO "
    "MACHTYPE MAPFILE OLDPWD OPTARG OPTERR OPTIND OSTYPE PIPESTATUS PPID PS1 PS2 PS3 PS4 PWD RANDOM REPLY "
    "SECONDS SHELL SHELLOPTS SHLVL SRANDOM TIMEFORMAT UID _".split()
)
_BASH_PREFIXES = ("BASH", "COMP_", "COPROC", "HIST", "READLINE_")


def directArgv(command: str, env: Mapping[str, str]) -> list[str] | None:
    """The argv ``bash -c COMMAND`` would exec, when ``command`` needs nothing else of the shell: one simple
    command of words that are plain, single-quoted, or double-quoted with only ``$NAME`` / ``${NAME}`` in
    them (expanded from ``env``, unset: empty; none that bash sets itself, such as ``$PWD`` or ``$RANDOM``),
    not starting with a builtin, keyword or assignment, and no exported bash function in ``env``. None for anything else (pipes, redirections, globs, ``~``, ``;``,
    unquoted ``$``, backslashes, ...): that goes to bash. Saves starting a shell for every run."""
    words: list[str] = []
    pos = _BLANKS.match(command)
    at = pos.end() if pos else 0
    while at < len(command):
        m = _WORD.match(command, at)
        if m is None:
            return None
        words.append(m.group(0))
        gap = _BLANKS.match(command, m.end())
        if gap is None and m.end() < len(command):
            return None
        at = gap.end() if gap else m.end()
    if not words:
        return None
    first = words[0]
    if "=" in first.split("'")[0].split('"')[0] or any(k.startswith("BASH_FUNC_") for k in env):
        return None  # an assignment; or a function that may stand for the command
    for w in words:
        for m in _VAR.finditer(w):
            name = m.group(1) or m.group(2)
            if name in BASH_VARIABLES or name.startswith(_BASH_PREFIXES):
                return None  # bash's own value, not the environment's
    argv = [_unquote(w, env) for w in words]
    return None if argv[0] in SHELL_WORDS or not argv[0] else argv


def _unquote(word: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    pos = 0
    while pos < len(word):
        c = word[pos]
        if c == "'":
            end = word.index("'", pos + 1)
            out.append(word[pos + 1 : end])
        elif c == '"':
            end = word.index('"', pos + 1)
            out.append(_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), word[pos + 1 : end]))
        else:
            end = pos
            while end + 1 < len(word) and word[end + 1] not in "'\"":
                end += 1
            out.append(word[pos : end + 1])
        pos = end + 1
    return "".join(out)


def shellArgv(command: str) -> list[str]:
    """The argv that runs ``command``: ``bash -c`` (``sh -c`` when there is no bash)."""
    return [_shell(), "-c", command]


@functools.lru_cache(maxsize=1)
def _shell() -> str:
    return shutil.which("bash") or "/bin/sh"
