"""pyexputils against the original PyExpUtils, side by side: times, ratios and file-system calls.

Run through ``benchmarks/run`` (it builds the environments). Each workload runs in a fresh process per
implementation (bench_worker.py) on the same generated data; times are the best of a few runs. File-system
calls are counted with ``strace -f -c -e trace=%file,getdents64`` around the same worker, minus the
worker's own start-up (the ``noop`` workload: same imports, no work).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "bench_worker.py")


def grid(names: str, n: int = 10) -> dict[str, list[float]]:
    return {k: [round(0.1 * i, 1) for i in range(n)] for k in names}


# name -> (experiment, save_path, spec); every workload's data lives in its own folder
WORKLOADS: dict[str, dict[str, Any]] = {
    "getperm": dict(
        title="1e6 getPermutation (6 params x 10 values)",
        exp={"name": "getperm", "metaParameters": grid("abcdef")},
        save_path="results/{name}/{params}/{run}",
        spec={"calls": 1_000_000},
        upstream="v8",
        target=1.0,
    ),
    "missing-1e5": dict(
        title="listMissingResults, 1e5 indices (1e4 settings x 10 runs), 90 % present",
        exp={"name": "m5", "metaParameters": grid("abcd")},
        save_path="results/{name}/{params}/{run}",
        spec={"runs": 10, "present": 0.9},
        upstream="v3",
        target=0.2,
    ),
    "missing-1e6": dict(
        title="listMissingResults, 1e6 indices (1e5 settings x 10 runs), 90 % present",
        exp={"name": "m6", "metaParameters": grid("abcde")},
        save_path="results/{name}/{params}/{run}",
        spec={"runs": 10, "present": 0.9},
        upstream="v3",
        target=2.0,
    ),
    "load": dict(
        title="loadResults + getBest, 2,000 .npy of 1,000 floats",
        exp={"name": "load", "metaParameters": {"a": grid("a")["a"], "b": grid("b")["b"], "c": list(range(20))}},
        save_path="results/{name}/{params}",
        spec={"filename": "returns.npy"},
        upstream="v3",
        target=None,  # checked against the plain np.load loop: <= 1.1x
    ),
}


def prepare(name: str, root: str, ours: str) -> str:
    """Create (once) the folder of one workload: config.json, exp.json, bench.json and its results."""
    w = WORKLOADS[name]
    folder = os.path.join(root, name)
    marker = os.path.join(folder, "bench.json")
    if os.path.exists(marker):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"save_path": w["save_path"]}, f)
    with open(os.path.join(folder, "exp.json"), "w") as f:
        json.dump(w["exp"], f)
    spec = dict(w["spec"])
    if name.startswith("missing") or name == "load":
        t = time.perf_counter()
        print(f"  creating the results of {name} in {folder} ...", file=sys.stderr, flush=True)
        script = MAKE_MISSING if name.startswith("missing") else MAKE_LOAD
        out = subprocess.run([ours, "-c", script, json.dumps(spec)], cwd=folder, check=True, capture_output=True, text=True)
        spec.update(json.loads(out.stdout))
        print(f"  ... {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    with open(marker + ".tmp", "w") as f:
        json.dump(spec, f)
    os.replace(marker + ".tmp", marker)
    return folder


MAKE_MISSING = """
import json, os, random, sys
from pyexputils.models import loadExperiment
from pyexputils.results import listResultsPaths
spec = json.loads(sys.argv[1])
exp = loadExperiment("exp.json")
rng = random.Random(0)
made = 0
for path in listResultsPaths(exp, spec["runs"]):
    if rng.random() < spec["present"]:
        os.makedirs(path)
        made += 1
print(json.dumps({"present_count": made}))
"""

MAKE_LOAD = """
import json, os, sys
import numpy as np
from pyexputils.models import loadExperiment
from pyexputils.results import listResultsPaths
spec = json.loads(sys.argv[1])
exp = loadExperiment("exp.json")
rng = np.random.default_rng(0)
files = []
for path in listResultsPaths(exp):
    os.makedirs(path)
    files.append(os.path.join(path, spec["filename"]))
    np.save(files[-1], rng.random(1000))
print(json.dumps({"files": files}))
"""


def warm(folder: str) -> None:
    """Walk the data once so that every implementation starts from the same (warm) directory cache."""
    subprocess.run(["find", folder, "-name", "__none__"], check=False, capture_output=True)


def dropCaches() -> None:
    """Empty the kernel's page, dentry and inode caches (root): the next run reads the disk, as on a cold node."""
    subprocess.run(["sync"], check=False)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


COLD = False  # --cold: every timed run starts from emptied caches (one run each, not the best of 3)
ROUNDS = 3  # --rounds: cold runs of each implementation, alternating; the median counts


def work(python: str, impl: str, workload: str, folder: str, strace: bool = False) -> dict[str, Any]:
    """Run one worker; with ``strace``, return its file-system call count instead of times."""
    if COLD and not strace:
        dropCaches()
    else:
        warm(folder)
    cmd = [python, WORKER, impl, workload, folder, "1" if strace or COLD else "3"]
    if strace:
        with tempfile.NamedTemporaryFile("r", suffix=".strace") as log:
            subprocess.run(
                ["strace", "-f", "-c", "-e", "trace=%file,getdents64", "-o", log.name, *cmd],
                check=True,
                capture_output=True,
            )
            text = log.read()
        total = next(line for line in text.splitlines() if line.strip().endswith("total"))
        return {"calls": int(total.split()[3])}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def calls(python: str, impl: str, workload: str, folder: str) -> int:
    return work(python, impl, workload, folder, strace=True)["calls"] - work(python, impl, "noop", folder, strace=True)["calls"]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.+)", f.read())
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", required=True, help="python of the environment with pyexputils")
    parser.add_argument("--v8", required=True, help="python of the environment with PyExpUtils-andnp 8.x")
    parser.add_argument("--v3", required=True, help="python of the environment with PyExpUtils-andnp 3.x")
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "pyexputils-bench"))
    parser.add_argument("--only", nargs="*", choices=list(WORKLOADS), help="run only these workloads")
    parser.add_argument("--no-strace", action="store_true", help="skip the file-system call counts")
    parser.add_argument("--out", help="also write the table (Markdown) to this file")
    parser.add_argument("--cold", action="store_true",
                        help="start every timed run from emptied kernel caches (root; one run each; printed, not written to --out)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"with --cold: runs of each implementation, alternating; the median counts (default {ROUNDS})")  # fmt: skip
    args = parser.parse_args()
    global COLD
    COLD = args.cold
    strace = not args.no_strace and shutil.which("strace") is not None
    versions = {impl: version(getattr(args, impl), impl) for impl in ("ours", "v8", "v3")}
    rows = []
    failed = []
    for name in args.only or list(WORKLOADS):
        w = WORKLOADS[name]
        print(f"{name}: {w['title']}", file=sys.stderr, flush=True)
        folder = prepare(name, args.data, args.ours)
        runs: dict[str, list[float]] = {"ours": [], "upstream": [], "listing": [], "first": []}
        floor = COLD and name.startswith("missing")  # cold: also a first look (no listing cache) and the listing alone
        if floor:  # ours keeps what an earlier look saw (the listing cache): made here once, untimed
            work(args.ours, "ours", name, folder)
        if COLD:  # a VM's disk is cached by its host too: read it all once, so that no side pays the host's misses
            warm(folder)
        sides = [("ours", args.ours), ("upstream", getattr(args, w["upstream"]))]
        sides += [("first", args.ours), ("listing", args.ours)] if floor else []
        for r in range(max(1, args.rounds) if COLD else 1):  # cold runs vary 2x with the disk: rotate, take the median
            got = {}
            for side, python in sides[r % len(sides) :] + sides[: r % len(sides)]:  # each side first in turn
                got[side] = work(python, w["upstream"] if side == "upstream" else side, name, folder)
                runs[side].append(got[side]["seconds"])
            ours, up = got["ours"], got["upstream"]
            if COLD:
                extra = f", first look {got['first']['seconds']:.3f} s, listing alone {got['listing']['seconds']:.3f} s" if floor else ""
                print(f"  cold: ours {ours['seconds']:.3f} s, upstream {up['seconds']:.3f} s{extra}", file=sys.stderr, flush=True)
        ours["seconds"], up["seconds"] = statistics.median(runs["ours"]), statistics.median(runs["upstream"])
        row: dict[str, Any] = {"name": name, "title": w["title"], "ours": ours, "upstream": up, "impl": w["upstream"], "runs": runs}
        if strace and name != "getperm":
            row["ours_calls"] = calls(args.ours, "ours", name, folder)
            row["upstream_calls"] = calls(getattr(args, w["upstream"]), w["upstream"], name, folder)
        if name.startswith("missing") and ours["check"] != up["check"]:
            failed.append(f"{name}: ours finds {ours['check']} missing, upstream {up['check']}")
        if floor and got["first"]["check"] != up["check"]:
            failed.append(f"{name}: ours without the listing cache finds {got['first']['check']} missing, upstream {up['check']}")
        if name == "load" and ours["check"] != up["check"]:
            failed.append(f"{name}: best setting differs: ours {ours['check']}, upstream {up['check']}")
        target = w["target"]
        if target is not None and not COLD and ours["seconds"] > target:  # the targets are for warm caches
            failed.append(f"{name}: {ours['seconds']:.3f} s is over the target {target} s")
        if name == "load" and ours["seconds"] > 1.1 * ours["baseline_seconds"]:
            failed.append(f"{name}: {ours['seconds']:.3f} s is over 1.1x the plain np.load loop ({ours['baseline_seconds']:.3f} s)")
        rows.append(row)
        print(f"  ours {ours['seconds']:.3f} s, upstream {up['seconds']:.3f} s", file=sys.stderr, flush=True)
    table = render(rows, versions, strace)
    print(table)
    if args.out and not COLD:  # RESULTS.md keeps the warm table
        kept = ""  # the sections other benchmarks keep in the same file (``## ...``, e.g. bench_fit.py's)
        if os.path.exists(args.out):
            with open(args.out) as f:
                old = f.read()
            kept = old[old.index("\n## ") :] if "\n## " in old else ""
        with open(args.out, "w") as f:
            f.write(table + kept)
    for line in failed:
        print(f"TARGET MISSED: {line}", file=sys.stderr)
    return 1 if failed else 0


def version(python: str, impl: str) -> str:
    module = "pyexputils" if impl == "ours" else "PyExpUtils-andnp"
    code = f"import importlib.metadata as m; print(m.version({module!r}))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip() or "?"


def render(rows: list[dict[str, Any]], versions: dict[str, str], strace: bool) -> str:
    lines = [
        f"Machine: {machine()}",
        f"pyexputils {versions['ours']}; original: PyExpUtils-andnp {versions['v8']} (getPermutation) and "
        f"{versions['v3']} (results API of the seed)",
        "",
        "| workload | pyexputils | original | original / pyexputils | target | fs calls: pyexputils | fs calls: original |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        ours, up = row["ours"]["seconds"], row["upstream"]["seconds"]
        w = WORKLOADS[row["name"]]
        if row["name"] == "load":
            base = row["ours"]["baseline_seconds"]
            target = f"<= 1.1x plain np.load loop ({base:.3f} s): {ours / base:.2f}x"
        else:
            target = f"<= {w['target']} s"
        oc = f"{row['ours_calls']:,}" if "ours_calls" in row else "-"
        uc = f"{row['upstream_calls']:,}" if "upstream_calls" in row else "-"
        lines.append(
            f"| {row['title']} ({row['impl'] if row['impl'] else ''}) | {ours:.3f} s | {up:.3f} s | {up / ours:.1f}x | {target} | {oc} | {uc} |"
        )
    lines.append("")
    if COLD:
        lines.append("Cold caches (--cold): every timed run is one run after `sync; echo 3 > /proc/sys/vm/drop_caches`; "
                     "the data is read once before (`find`), so that a virtual machine's host caches it alike for both "
                     "sides; the implementations take turns going first, and the table shows the median of each. For the "
                     "missing workloads a third side lists every setting folder once with 16 threads and does nothing else: "
                     "the disk's share, which any implementation that reads each setting folder pays. pyexputils keeps what "
                     "each setting folder held (the listing cache, written by an untimed look before the rounds) and, while a "
                     "folder is unchanged, reads its inode (`stat`) instead of listing it; a fourth side, the first look, is "
                     "pyexputils without that cache (`cache=False`: every setting folder listed). Every run:")  # fmt: skip
        lines.append("")
        for row in rows:
            pairs = zip(row["runs"]["ours"], row["runs"]["upstream"])
            lines.append(f"- {row['name']}: " + "; ".join(f"{a:.3f} s vs {b:.3f} s ({b / a:.1f}x)" for a, b in pairs))
            if row["runs"]["listing"]:
                floor = statistics.median(row["runs"]["listing"])
                lines.append(f"  - listing every setting folder once and nothing else (16 threads): "
                             + "; ".join(f"{x:.3f} s" for x in row["runs"]["listing"])
                             + f"; median {floor:.3f} s, so pyexputils takes {row['ours']['seconds'] / floor:.2f}x the listing alone")  # fmt: skip
            if row["runs"]["first"]:
                first = statistics.median(row["runs"]["first"])
                lines.append(f"  - a first look (no listing cache): " + "; ".join(f"{x:.3f} s" for x in row["runs"]["first"])
                             + f"; median {first:.3f} s: {row['upstream']['seconds'] / first:.1f}x faster than the original, "
                             f"{first / floor:.2f}x the listing alone")  # fmt: skip
        lines.append("")
    if not COLD:
        lines.append("Times: best of 3 runs (fewer once the runs took 15 s together; the load workload alternates 5 runs with "
                     "the plain loop in one process), each implementation starting from a directory cache warmed by `find`.")  # fmt: skip
    lines.append("fs calls: system calls of the `%file` class plus `getdents64`, from `strace -f -c`, minus the same worker's "
                 "start-up." if strace else "fs calls: not counted (--no-strace, or strace not installed).")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
