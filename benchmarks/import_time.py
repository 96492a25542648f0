"""Import time of ``import tracerbayes`` against its peer ``import jax, numpyro, xarray``.

Each statement runs in a fresh interpreter (``python -X importtime -c STATEMENT``), after one
discarded warm-up run of each (to fill the file cache), ``--repeats`` times, the two
statements alternating so that a change in machine load hits both alike. Reported per
statement, as the median over the repeats:

* **import** (the figure compared): the time ``-X importtime`` attributes to the statement's
  own top-level imports (the ``cumulative`` column of ``tracerbayes``, or of ``jax``,
  ``numpyro`` and ``xarray`` summed), i.e. without interpreter start-up;
* **process**: the wall-clock time of the whole ``python -c`` process, start-up included,
  and the same for ``python -c pass`` as the floor.

The target (issue 15, item 4) is a ratio ``tracerbayes / peer`` of at most 1.5. Also printed:
the ten modules with the largest own (``self``) import time under ``import tracerbayes``
(median over the repeats, with their cumulative time), the same summed per top-level package,
what it loads that the peer does not, and whether ``matplotlib.pyplot``, ``arviz``, ``gpjax``
and ``cartopy`` are in ``sys.modules`` after ``import tracerbayes`` (they should not be: they
load when first used).

Usage::

    python benchmarks/import_time.py [--repeats 7] [--output benchmarks/results/import_time.md]

Takes well under a minute on two cores. The output is Markdown.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path

TARGET = 1.5
STATEMENTS = {"tracerbayes": "import tracerbayes", "peer": "import jax, numpyro, xarray"}
#: Modules that ``import tracerbayes`` should leave unloaded.
HEAVY = ("matplotlib.pyplot", "arviz", "gpjax", "cartopy")
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)\s*$")


def run_once(statement: str) -> tuple[float, list[tuple[str, int, int, int]]]:
    """Wall-clock seconds of ``python -X importtime -c statement`` and its parsed lines
    ``(module, self_us, cumulative_us, depth)``."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                          capture_output=True, text=True, check=True, env=_env())
    wall = time.perf_counter() - start
    rows = []
    for line in proc.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            self_us, cum_us, indent, name = match.groups()
            rows.append((name, int(self_us), int(cum_us), (len(indent) - 1) // 2))
    return wall, rows


def statement_time(rows: list[tuple[str, int, int, int]], statement: str) -> float:
    """Seconds spent in the statement's own top-level imports (depth 0, named in it)."""
    names = {n.strip() for n in statement.removeprefix("import ").split(",")}
    found = {name: cum for name, _, cum, depth in rows if depth == 0 and name in names}
    missing = names - set(found)
    if missing:
        raise RuntimeError(f"-X importtime output has no top-level line for {sorted(missing)}")
    return sum(found.values()) / 1e6


def bare_process() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=_env())
    return time.perf_counter() - start


def loaded_after_import() -> dict[str, bool]:
    code = ("import sys, tracerbayes; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=_env()).stdout.strip()
    loaded = set(out.split(",")) - {""}
    return {name: name in loaded for name in HEAVY}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # measure reading .pyc, never writing them
    return env


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def measure(repeats: int) -> str:
    for statement in STATEMENTS.values():  # warm-up: file cache, .pyc files
        run_once(statement)
    import_s: dict[str, list[float]] = defaultdict(list)
    process_s: dict[str, list[float]] = defaultdict(list)
    bare = []
    self_us: dict[str, list[int]] = defaultdict(list)
    cum_us: dict[str, list[int]] = defaultdict(list)
    peer_modules: set[str] = set()
    for _ in range(repeats):
        for key, statement in STATEMENTS.items():
            wall, rows = run_once(statement)
            import_s[key].append(statement_time(rows, statement))
            process_s[key].append(wall)
            if key == "tracerbayes":
                inside = _under(rows, "tracerbayes")
                for name, s, c, _ in inside:
                    self_us[name].append(s)
                    cum_us[name].append(c)
            else:
                peer_modules.update(name for name, _, _, _ in rows)
        bare.append(bare_process())

    med = {key: statistics.median(v) for key, v in import_s.items()}
    proc = {key: statistics.median(v) for key, v in process_s.items()}
    floor = statistics.median(bare)
    ratio = med["tracerbayes"] / med["peer"]
    verdict = "within" if ratio <= TARGET else "ABOVE"

    out = [
        "# Import time of `import tracerbayes`",
        "",
        f"{datetime.date.today().isoformat()}; `python benchmarks/import_time.py "
        f"--repeats {repeats}`; Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} cores; jax {_version('jax')}, numpyro {_version('numpyro')}, "
        f"xarray {_version('xarray')}, arviz {_version('arviz')}, "
        f"gpjax {_version('gpjax')}. Medians of {repeats} fresh interpreters each.",
        "",
        "| statement | import (s, -X importtime) | process (s, wall, with start-up) |",
        "| --- | ---: | ---: |",
    ]
    for key, statement in STATEMENTS.items():
        out.append(f"| `{statement}` | {med[key]:.3f} | {proc[key]:.3f} |")
    out += [
        f"| `python -c pass` (start-up floor) | - | {floor:.3f} |",
        f"| **ratio tracerbayes / peer** | **{ratio:.2f}** | "
        f"{(proc['tracerbayes'] - floor) / (proc['peer'] - floor):.2f} (less start-up) |",
        "",
        f"Target: ratio <= {TARGET} ({verdict} target).",
        "",
        "Loaded after `import tracerbayes`: "
        + ", ".join(f"`{m}` {'yes' if v else 'no'}" for m, v in loaded_after_import().items())
        + ".",
        "",
        "## Ten slowest modules under `import tracerbayes` (own time)",
        "",
        "| module | self (ms) | cumulative (ms) |",
        "| --- | ---: | ---: |",
    ]
    med_self = {name: statistics.median(v) for name, v in self_us.items()}
    for name in sorted(med_self, key=med_self.get, reverse=True)[:10]:
        out.append(f"| `{name}` | {med_self[name] / 1e3:.1f} | "
                   f"{statistics.median(cum_us[name]) / 1e3:.1f} |")
    per_package: dict[str, float] = defaultdict(float)
    for name, value in med_self.items():
        per_package[name.split(".")[0]] += value
    total = sum(per_package.values())
    out += [
        "",
        "## Own import time per top-level package under `import tracerbayes`",
        "",
        "| package | self, summed (ms) | share |",
        "| --- | ---: | ---: |",
    ]
    for name in sorted(per_package, key=per_package.get, reverse=True)[:10]:
        out.append(f"| `{name}` | {per_package[name] / 1e3:.1f} | "
                   f"{per_package[name] / total:.0%} |")
    extra: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for name, value in med_self.items():
        if name not in peer_modules:
            extra[name.split(".")[0]] += value
            count[name.split(".")[0]] += 1
    out += [
        "",
        f"Per-module medians drop the load spikes of single runs, so they sum to "
        f"{total / 1e6:.2f} s, less than the median total above.",
        "",
        "## What `import tracerbayes` loads beyond the peer",
        "",
        "Modules imported by `import tracerbayes` and not by `import jax, numpyro, xarray`, "
        "own time summed per top-level package (the ten largest):",
        "",
        "| package | modules | self, summed (ms) |",
        "| --- | ---: | ---: |",
    ]
    for name in sorted(extra, key=extra.get, reverse=True)[:10]:
        out.append(f"| `{name}` | {count[name]} | {extra[name] / 1e3:.1f} |")
    out.append(f"| all | {sum(count.values())} | {sum(extra.values()) / 1e3:.1f} |")
    return "\n".join(out) + "\n"


def _under(rows: list[tuple[str, int, int, int]], top: str) -> list[tuple[str, int, int, int]]:
    """The lines of the subtree of the top-level import ``top``: ``-X importtime`` prints a
    module after its children, so the subtree is the run of deeper lines just before it."""
    for i, (name, _, _, depth) in enumerate(rows):
        if name == top and depth == 0:
            j = i
            while j > 0 and rows[j - 1][3] > 0:
                j -= 1
            return rows[j:i + 1]
    raise RuntimeError(f"no top-level line for {top}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)
    report = measure(args.repeats)
    print(report, end="")
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
