"""Safe reading of YAML configurations: duplicate keys, alias bombs, where each error is,
and analysis times that never pass ``times.end``."""

import os

import numpy as np
import pytest
from test_config import BASE, _inputs, _problems, _write

from tracerbayes.cli import main as cli
from tracerbayes.cli.config import ConfigError, build_times, load_config, validate_config
from tracerbayes.cli.config.load import MAX_ALIAS_VALUES, MAX_DEPTH


def _line(text: str, start: str, occurrence: int = 0) -> int:
    """1-based line of the ``occurrence``-th line of ``text`` that starts with ``start``."""
    lines = [k + 1 for k, line in enumerate(text.splitlines()) if line.startswith(start)]
    return lines[occurrence]


def _bomb(levels: int) -> str:
    """A "billion laughs" document: ``a{levels-1}`` expands to 10**levels strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]" for k in range(1, levels)]
    return "\n".join(lines) + f"\ntitle: *a{levels - 1}\n"


# ------------------------------------------------------------------------- duplicate keys
@pytest.mark.parametrize(("old", "new", "path", "first"), [
    ("seed: 3}\n", "seed: 3}\nmethod: {name: laplace}\n", "method", "method:"),
    ("  smoothness: 5/2\n", "  smoothness: 5/2\n  noise_sd: {halfnormal: {scale: 0.3}}\n",
     "priors.noise_sd", "  noise_sd:"),
    ("step: 1 day}", "step: 1 day, start: 2020-01-02}", "times.start", "times:"),
    ("platform: platform}", "platform: platform, x: ypos}", "observations[0].columns.x",
     "    columns:"),
])
def test_duplicate_key_names_the_key_and_both_lines(tmp_path, rng, old, new, path, first):
    _inputs(tmp_path, rng)
    text = BASE.replace(old, new)
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    (problem,) = info.value.problems
    key = path.rpartition(".")[2]
    assert problem.path == path
    assert problem.line == _line(text, first, -1)
    assert problem.message.startswith(f"duplicate key {key!r}: first given at line "
                                      f"{_line(text, first)}, column")
    assert str(info.value).startswith(f"{tmp_path / 'run.yaml'}: 1 problem:\n  - line "
                                      f"{problem.line}, column {problem.column}: {path}: ")


def test_every_duplicate_is_reported_together(tmp_path, rng):
    _inputs(tmp_path, rng)
    text = BASE.replace("seed: 3}", "seed: 3, seed: 4}") + "tracer: {name: salt}\n"
    problems = _problems(tmp_path, text)
    assert [(p.path, p.line) for p in problems] == [("method.seed", 21), ("tracer", 22)]
    # 1 and 1.0 are one key to a dict, so they are duplicates too
    (problem,) = _problems(tmp_path, BASE.replace("seed: 3}", "seed: 3, 1: a, 1.0: b}"))
    assert problem.path == "method.1.0" and "first given at line 21" in problem.message


def test_aliases_and_merge_keys_of_a_normal_config_still_load(tmp_path, rng):
    _inputs(tmp_path, rng)
    # a second source that repeats the first (merge key) with its own error: an override
    # of a merged key is not a duplicate
    text = BASE.replace("observations:\n  - file", "observations:\n  - &argo\n    file").replace(
        "    error: 0.2\n", "    error: 0.2\n  - {<<: *argo, error: 0.5}\n")
    cfg = load_config(_write(tmp_path, text))
    first, second = cfg.observations
    assert (first.error, second.error) == (0.2, 0.5)
    assert second.file == first.file and second.columns == first.columns


# ------------------------------------------------------------------------------ aliases
def test_alias_bomb_is_refused_before_it_expands(tmp_path, rng):
    _inputs(tmp_path, rng)
    path = _write(tmp_path, _bomb(8))  # 1 kB of text, 10**8 strings once expanded
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert (problem.path, problem.line) == ("a3[7]", 4)
    assert problem.message.startswith(f"YAML aliases repeat more than {MAX_ALIAS_VALUES} "
                                      "values by this *a2 (an alias bomb?); refused")
    assert str(info.value).startswith(f"{path}: 1 problem:\n  - line 4, column ")
    assert validate_config(path) == info.value.problems


@pytest.mark.parametrize(("uses", "refused"), [(100, False), (101, True)])
def test_alias_limit_counts_every_repeated_value(tmp_path, rng, uses, refused):
    _inputs(tmp_path, rng)
    items = ", ".join(["0"] * 99)  # a list of 99 numbers: 100 values with the list itself
    text = BASE + f"pad: &pad [{items}]\nextra: [" + ", ".join(["*pad"] * uses) + "]\n"
    problems = _problems(tmp_path, text)
    if refused:
        (problem,) = problems
        assert problem.path == f"extra[{uses - 1}]" and "alias bomb" in problem.message
    else:
        assert [p.path for p in problems] == ["pad", "extra"]


@pytest.mark.parametrize(("title", "message"), [
    ("&t [a, *t]", "alias *t is used inside the value &t names (a recursive alias)"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
     f"values nested more than {MAX_DEPTH} levels deep"),
])
def test_recursive_alias_and_deep_nesting_are_refused(tmp_path, rng, title, message):
    _inputs(tmp_path, rng)
    (problem,) = _problems(tmp_path, BASE.replace("test basin", title))
    assert problem.path.startswith("title[") and problem.line == 1
    assert problem.message.startswith(message)


# --------------------------------------------------------------- where each error is
@pytest.mark.parametrize(("old", "new", "path", "line", "message"), [
    ("  x: [0, 120 km]", "  x: [0, 120 km", "grid.x", 5, "invalid YAML: while parsing a flow"),
    ("end: 2020-01-05", "end: 2020-02-30", "times.end", 8,
     "invalid YAML: cannot read '2020-02-30' as a timestamp: day is out of range for month"),
    ("  resolution: 10 km", "  resolution: 10 km\n\ttab: 1", "grid", 7, "invalid YAML: "),
    ("  noise_sd:", "  noise_std:", "priors.noise_std", 18, "unknown key 'noise_std'"),
    ("n_modes: 12", "n_modes: -3", "model.n_modes", 20, "expected an integer >= 1"),
    ("  resolution: 10 km\n", "", "grid.resolution", 4, "missing required key 'resolution'"),
    # values that used to escape as TypeError, OverflowError or ValueError, or wrap around
    ("kind: given", "kind: [1]", "velocity.kind", 13, "[1] is not one of ['given'"),
    ("smoothness: 5/2", "smoothness: [1]", "priors.smoothness", 19, "expected Matérn"),
    ("error: 0.2", "error: 1" + "0" * 400, "observations[0].error", 12,
     "expected a number > 0, got inf"),
    ("y: [0, 100000 m]", "y: [0, 1" + "0" * 400 + "]", "grid.y[1]", 5, "expected length"),
    ("resolution: 10 km", "resolution: 1e-320", "grid.resolution", 6,
     "the x extent [0, 120000] is not a whole number of cells of 9.99989e-321 (inf)"),
    ("end: 2020-01-05", "end: 9999-12-31", "times.end", 8,
     "9999-12-31 is outside the years 1678 to 2261"),
    ("file: data/mask.nc", 'file: "data/mask\\0.nc"', "grid.mask.file", 7,
     "expected a file path"),
])
def test_every_error_names_file_line_and_key(tmp_path, rng, old, new, path, line, message):
    _inputs(tmp_path, rng)
    assert old in BASE
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, BASE.replace(old, new)))
    problem = info.value.problems[0]
    assert (problem.path, problem.line) == (path, line)
    assert problem.message.startswith(message)
    assert str(info.value).startswith(f"{tmp_path / 'run.yaml'}: ")


@pytest.mark.parametrize(("content", "line", "message"), [
    (b"", 1, "expected a mapping of settings at the top level; the file is empty"),
    (b"- a\n- b\n", 1, "expected a mapping of settings at the top level; got list"),
    (BASE.encode().replace(b"tracer:", b"tracer: \xe9"), 2, "not UTF-8 text: byte 0xe9"),
])
def test_unreadable_files_say_where(tmp_path, content, line, message):
    (tmp_path / "run.yaml").write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "run.yaml")
    (problem,) = info.value.problems
    assert problem.line == line and problem.message.startswith(message)


def test_problems_found_by_validate_carry_the_line_of_their_key(tmp_path, rng):
    _inputs(tmp_path, rng)
    (problem,) = validate_config(_write(tmp_path, BASE.replace("variable: mask",
                                                                "variable: msk")))
    assert (problem.path, problem.line) == ("grid.mask.variable", 7)


# ------------------------------------------------------------------------ times.end
@pytest.mark.parametrize(("times", "step"), [
    ("{start: 2020-01-01, end: 2020-01-10T12:00, step: 1 day}", np.timedelta64(1, "D")),
    ("{start: 2020-01-01, end: 2020-01-03, step: 7 h}", np.timedelta64(7, "h")),
    ("{start: 2020-01-01, end: 2020-01-01T12:00, step: 1 day}", np.timedelta64(1, "D")),
    ("{start: 2020-01-01T06:00, end: 2020-01-02T06:00, step: 6 h}", np.timedelta64(6, "h")),
])
def test_analysis_times_never_pass_end(tmp_path, rng, times, step):
    _inputs(tmp_path, rng)
    cfg = load_config(_write(tmp_path, BASE.replace(
        "{start: 2020-01-01, end: 2020-01-05, step: 1 day}", times)))
    got = build_times(cfg)
    start, end = cfg.times.start, cfg.times.end
    assert got[0] == start and np.all(np.diff(got) == step)
    assert got[-1] <= end < got[-1] + step  # up to and including end, never past it


def test_analysis_times_stop_at_the_last_step_before_an_off_step_end(tmp_path, rng):
    _inputs(tmp_path, rng)
    cfg = load_config(_write(tmp_path, BASE.replace(
        "end: 2020-01-05", "end: 2020-01-10T12:00")))
    expected = np.arange("2020-01-01", "2020-01-11", dtype="datetime64[D]")
    np.testing.assert_array_equal(build_times(cfg), expected.astype("datetime64[ns]"))


# ------------------------------------------------------------------- TRACERBAYES_DEBUG
def test_cli_refuses_the_bomb_in_one_line_without_tracerbayes_debug(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.delenv("TRACERBAYES_DEBUG", raising=False)
    path = _write(tmp_path, _bomb(9))  # 10**9 strings once expanded
    assert cli.main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == (f"{path}: line 4, column 45: a3[7]: YAML aliases repeat more than "
                   f"{MAX_ALIAS_VALUES} values by this *a2 (an alias bomb?); refused: write the "
                   "values out or use fewer aliases\n")


class _FailingEnvironment(dict):
    """``os.environ`` when memory is exhausted: every lookup fails."""

    def get(self, key, default=None):
        raise MemoryError

    def __getitem__(self, key):
        raise MemoryError


def test_the_error_handler_reads_no_environment_variable(monkeypatch, capsys):
    # regression: after a MemoryError, os.environ.get("TRACERBAYES_DEBUG") in the handler
    # itself failed, and the run died with "KeyError: 'TRACERBAYES_DEBUG'"
    monkeypatch.delenv("TRACERBAYES_DEBUG", raising=False)

    def exhaust(args):
        monkeypatch.setattr(os, "environ", _FailingEnvironment())
        raise MemoryError

    monkeypatch.setattr(cli, "_validate", exhaust)
    assert cli.main(["validate", "run.yaml"]) == 1
    assert capsys.readouterr().err == "tracerbayes: error: MemoryError: \n"


def test_tracerbayes_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("TRACERBAYES_DEBUG", "1")

    def fail(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_validate", fail)
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["validate", "run.yaml"])
