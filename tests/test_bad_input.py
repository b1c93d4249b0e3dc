"""The bad-input catalogue: every broken file, value, text and config a user is likely to feed `rrec validate`.

Each case gets one message that names the file and (where there is one) the row or line and the column,
says what is wrong and what to do, and exit code 2 from the CLI without a traceback. Text obfuscations
are not errors: they pass with a warning, and the validation stage cleans and lists them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestration.cli import EXIT_BAD_INPUT, main

HEADER = "user_id,item_id,rating,timestamp"
ITEMS_HEADER = "item_id,title,year,genres"


def interactions(n_users: int = 6, n_items: int = 8) -> list[str]:
    rows, t = [], 1_000_000
    for u in range(n_users):
        for i in range(6):
            rows.append(f"u{u},i{(u + i) % n_items},{1 + (u + i) % 5}.0,{t}")
            t += 1
    return rows


def items(n_items: int = 8) -> list[str]:
    return [f"i{i},Movie {i},199{i},Drama" for i in range(n_items)]


def replaced(rows: list[str], index: int, column: int, value: str) -> list[str]:
    rows = list(rows)
    fields = rows[index].split(",")
    fields[column] = value
    rows[index] = ",".join(fields)
    return rows


def csv(rows: list[str], header: str) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def project(root: Path, inter: bytes | None = None, item_table: bytes | None = None, **config) -> dict:
    data = root / "data" / "t"
    data.mkdir(parents=True, exist_ok=True)
    (data / "inter.csv").write_bytes(inter if inter is not None else csv(interactions(), HEADER))
    (data / "items.csv").write_bytes(item_table if item_table is not None else csv(items(), ITEMS_HEADER))
    params = {"data": {"path": "data/t", "format": "table", "interactions_file": "inter.csv", "items_file": "items.csv"}}
    for section, values in config.items():
        params.setdefault(section, {}).update(values)
    return params


def inter_case(rows: list[str]):
    return lambda root: project(root, inter=csv(rows, HEADER))


def item_case(rows: list[str]):
    return lambda root: project(root, item_table=csv(rows, ITEMS_HEADER))


def tsv_title_with_tab(root: Path) -> dict:
    from conftest import write_tiny_atomic

    d = write_tiny_atomic(root / "data" / "tiny")
    item_file = next(d.glob("*.item"))
    lines = item_file.read_text().splitlines()
    fields = lines[3].split("\t")
    fields[1] = "Before\tafter"  # a raw tab inside the title of line 4
    lines[3] = "\t".join(fields)
    item_file.write_text("\n".join(lines) + "\n")
    return {"data": {"path": "data/tiny", "format": "atomic"}}


GOOD = interactions()
# name -> (build the project, expected exit code, substrings the message must hold)
CASES: dict[str, tuple] = {
    # files
    "empty file": (lambda r: project(r, inter=b""), 2, ["inter.csv", "empty"]),
    "header only": (lambda r: project(r, inter=csv([], HEADER)), 2, ["inter.csv", "no rows"]),
    "binary file": (lambda r: project(r, inter=bytes(range(256)) * 8), 2, ["inter.csv", "line 1", "binary"]),
    "truncated last line": (inter_case(GOOD[:-1] + ["u5,i3"]), 2, ["inter.csv", "row 37", "timestamp", "truncated"]),
    "wrong delimiter": (lambda r: project(r, inter=csv(GOOD, HEADER).replace(b",", b";")), 2,
                        ["inter.csv", "';'-separated", "data.columns"]),
    "tab inside a title": (tsv_title_with_tab, 2, ["tiny.item", "line 4", "tab inside a title"]),
    "unclosed quote": (item_case(items()[:3] + ['i3,"Movie 3,1993,Drama'] + items()[4:]), 2,
                       ["items.csv", "row 4", "unclosed quote"]),
    "not UTF-8": (lambda r: project(r, item_table=(ITEMS_HEADER + "\ni0,Caf\xe9,1990,Drama\n").encode("latin-1")), 2,
                  ["items.csv", "line 2", "utf-8", "data.encoding"]),
    "2 MB line": (inter_case(replaced(GOOD, 3, 0, "u" + "x" * 2_000_000)), 2,
                  ["inter.csv", "row 5", "user_id", "2000001 characters", "max_id_chars"]),
    # values
    "NaN rating": (inter_case(replaced(GOOD, 3, 2, "NaN")), 2, ["inter.csv", "row 5", "'rating'", "not a number"]),
    "inf rating": (inter_case(replaced(GOOD, 3, 2, "inf")), 2, ["inter.csv", "row 5", "rating", "rating_max"]),
    "non-numeric rating": (inter_case(replaced(GOOD, 3, 2, "five")), 2, ["row 5", "'rating'", "'five'"]),
    "out-of-range rating": (inter_case(replaced(GOOD, 3, 2, "7")), 2, ["row 5", "rating=7.0", "rating_max"]),
    "non-numeric timestamp": (inter_case(replaced(GOOD, 3, 3, "yesterday")), 2, ["row 5", "'timestamp'"]),
    "infinite timestamp": (inter_case(replaced(GOOD, 3, 3, "inf")), 2, ["row 5", "'timestamp'", "finite"]),
    "negative timestamp": (inter_case(replaced(GOOD, 3, 3, "-5")), 2, ["row 5", "timestamp=-5", "seconds since 1970"]),
    "far-future timestamp (milliseconds)": (inter_case(replaced(GOOD, 3, 3, "1700000000000")), 2,
                                            ["row 5", "timestamp", "milliseconds"]),
    "duplicate item with conflicting data": (item_case(items() + ["i2,Another title,1980,Comedy"]), 2,
                                             ["items.csv", "row 4", "row 10", "item_id", "duplicates"]),
    "duplicate interaction": (inter_case(GOOD + [GOOD[3]]), 2, ["row 5", "row 38", "duplicates"]),
    "unknown item id": (inter_case(replaced(GOOD, 3, 1, "i999")), 2, ["row 5", "i999", "item table"]),
    "empty user id": (inter_case(replaced(GOOD, 3, 0, "")), 2, ["row 5", "user_id", "empty"]),
    "whitespace user id": (inter_case(replaced(GOOD, 3, 0, "   ")), 2, ["row 5", "user_id", "spaces"]),
    "padded item id": (inter_case(replaced(GOOD, 3, 1, " i3")), 2, ["row 5", "item_id=' i3'", "strip"]),
    "too few interactions": (inter_case(GOOD[:-4]), 2, ["row 32", "u5", "min_interactions_per_user"]),
    "absurd year": (item_case(replaced(items(), 2, 2, "99999")), 2, ["items.csv", "row 4", "year=99999", "year_max"]),
    "missing item column": (lambda r: project(r, inter=csv([x.split(",", 1)[1] for x in GOOD], "item_id,rating,timestamp"
                                                                                               ).replace(b"item_id", b"movie", 1)), 2,
                            ["inter.csv", "missing column", "data.columns"]),
    # text: cleaned and listed, not refused
    "invisible character in a title": (item_case(replaced(items(), 2, 1, "Mo\u200bvie 2")), 0,
                                       ["warning", "items.csv", "row 4", "title", "invisible"]),
    "control character in a title": (item_case(replaced(items(), 2, 1, "Mo\x07vie 2")), 0, ["warning", "row 4", "title"]),
    "look-alike letter in a title": (item_case(replaced(items(), 2, 1, "M\u043evie 2")), 0,
                                     ["warning", "row 4", "homoglyph"]),
    "1 MB title": (item_case(replaced(items(), 2, 1, "a" * 1_000_000)), 2,
                   ["items.csv", "row 4", "title", "1000000 characters", "max_text_chars"]),
    # config
    "unknown config key": (lambda r: project(r, validation={"ratng_min": 1}), 2,
                           ["p.yaml", "line", "validation.ratng_min", "unknown key"]),
    "wrong config type": (lambda r: project(r, validation={"rating_min": "low"}), 2,
                          ["p.yaml", "validation.rating_min", "'low'"]),
    "data path that does not exist": (lambda r: {"data": {"path": "data/nope"}}, 2, ["data/nope", "not found"]),
    "items file that does not exist": (lambda r: project(r, data={"items_file": "nope.csv"}), 2, ["nope.csv", "not found"]),
    "params file that does not exist": (None, 2, ["p.yaml", "not found"]),
    "params file that is not YAML": ("data: [unclosed\n", 2, ["p.yaml", "line 2", "not valid YAML"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_message(name, tmp_path, monkeypatch, capsys):
    build, code, expected = CASES[name]
    monkeypatch.chdir(tmp_path)
    if isinstance(build, str):
        (tmp_path / "p.yaml").write_text(build)
    elif build is not None:
        (tmp_path / "p.yaml").write_text(yaml.safe_dump(build(tmp_path)))
    assert main(["validate", "--params", "p.yaml"]) == code
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, f"{name}: {text!r} not in {err!r}"
    assert "Traceback" not in err


def test_catalogue_is_large_enough():
    assert len(CASES) >= 25


def test_the_cli_prints_no_traceback_unless_debug(tmp_path):
    """A real process: exit code 2 and one line; --debug shows the traceback."""
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(project(tmp_path, inter=b"")))
    cmd = [sys.executable, "-m", "orchestration.cli"]
    root = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    quiet = subprocess.run([*cmd, "validate", "--params", "p.yaml"], cwd=tmp_path, capture_output=True, text=True,
                           env=env)
    assert quiet.returncode == EXIT_BAD_INPUT
    assert "Traceback" not in quiet.stderr and "inter.csv: the file is empty" in quiet.stderr
    loud = subprocess.run([*cmd, "--debug", "validate", "--params", "p.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, env=env)
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "DataFormatError" in loud.stderr
