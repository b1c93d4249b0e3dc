"""The item-text sanitizer maps a catalogue of obfuscations back to the clean text, names what it
changed, and leaves clean text in any script alone."""
import pandas as pd
import pytest

from rrec_core.data.sanitize import describe, sanitize_frame, sanitize_text

CYR_O, CYR_T, CYR_Y, GREEK_T = "\u043e", "\u0422", "\u0443", "\u03a4"
OBFUSCATED = [  # (tampered, clean, kinds that must be reported)
    (f"T{CYR_O}y Story (1995)", "Toy Story (1995)", {"homoglyph"}),
    (f"{CYR_T}{CYR_O}{CYR_Y} Story (1995)", "Toy Story (1995)", {"homoglyph"}),
    (f"{GREEK_T}oy Story", "Toy Story", {"homoglyph"}),
    ("To\u200by St\u200cory\u200d", "Toy Story", {"invisible"}),
    ("Sto\u00adry", "Story", {"invisible"}),
    ("\ufeffToy Story", "Toy Story", {"invisible"}),
    ("Toy \u202eyrotS\u202c", "Toy yrotS", {"invisible"}),
    ("Toy Story\U000e0041\U000e0042", "Toy Story", {"invisible"}),
    ("\uff34\uff4f\uff59 \uff33\uff54\uff4f\uff52\uff59", "Toy Story", {"nfkc"}),
    ("\U0001d413\U0001d428\U0001d432 Story", "Toy Story", {"nfkc"}),
    ("Toy\u00a0Story", "Toy Story", {"nfkc"}),
    ("Toy   Story\t(1995)\n", "Toy Story (1995)", {"whitespace"}),
    (f"\uff34{CYR_O}\u200by\u2003 Story", "Toy Story", {"nfkc", "invisible", "homoglyph", "whitespace"}),
]
CLEAN = ["Брат 2", "Война и мир", "Ночь и Сон", "Ελληνικά", "東京物語", "Amélie", "Crème brûlée", "Das Boot",
         "Léon: The Professional (1994)", "8½", "Se7en", "M*A*S*H", "Schindler's List", "Sci-Fi|Thriller",
         "Toy Story (1995). Genres: Animation|Children's|Comedy."]


@pytest.mark.parametrize("tampered,clean,kinds", OBFUSCATED)
def test_obfuscations_map_back_to_the_clean_text(tampered, clean, kinds):
    out, found = sanitize_text(tampered)
    assert out == clean and kinds <= set(found)
    assert sanitize_text(out) == (out, ())  # idempotent


@pytest.mark.parametrize("text", CLEAN)
def test_clean_text_in_any_script_is_left_alone(text):
    assert sanitize_text(text) == (text, ())


def test_decomposed_accents_are_composed_and_fractions_kept():
    assert sanitize_text("Ame\u0301lie") == ("Amélie", ("nfkc",))
    assert sanitize_text("8½ (1963)")[0] == "8½ (1963)"  # NFKC would write "81⁄2"


def test_sanitize_frame_names_rows_and_columns_and_leaves_its_input():
    items = pd.DataFrame({"item_id": ["1", "2", "3"], "title": [f"T{CYR_O}y Story", "Heat", None],
                          "genres": ["Comedy", "Action\u200b", float("nan")]}, index=[2, 3, 4])  # source lines
    before = items.copy()
    out, changes = sanitize_frame(items, ["title", "genres", "missing"])
    pd.testing.assert_frame_equal(items, before)
    assert out["title"].tolist()[:2] == ["Toy Story", "Heat"] and out["title"].isna().tolist()[2]
    assert [(c.row, c.column, c.kinds) for c in changes] == [(2, "title", ("homoglyph",)),
                                                            (3, "genres", ("invisible",))]
    line = describe(changes[0], "data/ml-100k/ml-100k.item")
    assert line.startswith("data/ml-100k/ml-100k.item: row 2, column title: homoglyph") and "'Toy Story'" in line


def test_validation_stage_trains_on_sanitized_text_and_lists_each_change(tmp_path):
    from conftest import write_tiny_atomic

    from rrec_core import pipeline
    from rrec_core.config import DataConfig, SplitConfig, ValidationConfig

    path = write_tiny_atomic(tmp_path / "data" / "tiny")
    item_file = path / "tiny.item"
    lines = item_file.read_text().splitlines()
    lines[3] = lines[3].replace("movie", f"m{CYR_O}vie\u200b")  # source line 4: item 3
    item_file.write_text("\n".join(lines) + "\n")
    raw = pipeline.load_raw_data(DataConfig(path=str(path)), root=".")
    data = pipeline.validate_and_split(raw, ValidationConfig(), SplitConfig())
    titles = dict(zip(data.items["item_id"], data.items["title"]))
    assert titles["3"] == "movie " + titles["3"].split(" ", 1)[1] and all(t.isascii() for t in titles.values())
    t = data.text_changes
    assert len(t) == 1 and t.iloc[0]["row"] == 4 and t.iloc[0]["column"] == "title"
    assert t.iloc[0]["kinds"] == "invisible+homoglyph"
    off = pipeline.validate_and_split(raw, ValidationConfig(sanitize_text=False), SplitConfig())
    assert len(off.text_changes) == 0 and not dict(zip(off.items["item_id"], off.items["title"]))["3"].isascii()
