"""Tests of the Great Expectations suite in rrec_core.validation.

Frames are built by `_frame`, which mimics the loaders' contract: string ids, `attrs["source"]`
and an index holding the 1-based source line number (header = line 1, first data row = 2).
Each dirty case breaks exactly one expectation and checks that the report names it, its column
and the source line of the first offending row.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rrec_core.config import ValidationConfig
from rrec_core.validation import (
    DataValidationError,
    ExpectationFailure,
    ValidationReport,
    user_interaction_counts,
    validate_dataset,
)

INTER_SRC = "data/toy/toy.inter"
ITEM_SRC = "data/toy/toy.item"
CFG = ValidationConfig(min_interactions_per_user=2, max_examples=5)


def _frame(columns: dict, source: str, dtypes: dict | None = None) -> pd.DataFrame:
    """A frame as the loaders hand it over: index = source line numbers, attrs["source"]."""
    n = len(next(iter(columns.values())))
    df = pd.DataFrame(columns, index=pd.RangeIndex(2, n + 2))
    if dtypes:
        df = df.astype(dtypes)
    df.attrs["source"] = source
    return df


def clean_interactions() -> pd.DataFrame:
    # three users with three interactions each; source lines 2..10
    return _frame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u2", "u3", "u3", "u3"],
            "item_id": ["i1", "i2", "i3", "i1", "i2", "i4", "i2", "i3", "i4"],
            "rating": [5.0, 3.0, 4.0, 1.0, 2.0, 5.0, 4.0, 4.0, 3.0],
            "timestamp": [10, 11, 12, 20, 21, 22, 30, 31, 32],
        },
        INTER_SRC,
        {"user_id": "str", "item_id": "str", "rating": "float64", "timestamp": "int64"},
    )


def clean_items() -> pd.DataFrame:
    # i5 is never interacted with, so breaking it touches only the item table
    return _frame(
        {
            "item_id": ["i1", "i2", "i3", "i4", "i5"],
            "title": ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat"],
            "year": pd.array([1995, 1995, 1995, 1995, None], dtype="Int64"),
            "genres": ["Animation|Comedy", "Action", "Thriller", "Comedy Drama", "Crime"],
        },
        ITEM_SRC,
        {"item_id": "str", "title": "str", "genres": "str"},
    )


def failing(report: ValidationReport) -> set[tuple[str, str, str | None]]:
    return {(f.table, f.expectation, f.column) for f in report.failures}


def test_clean_frames_pass():
    report = validate_dataset(clean_interactions(), clean_items(), CFG)
    assert report.success, report.markdown()
    assert report.failures == []
    st = report.statistics
    assert st["n_rows"] == 9 and st["n_users"] == 3 and st["n_items"] == 4 and st["n_catalog_items"] == 5
    assert st["interactions"]["evaluated_expectations"] == st["interactions"]["successful_expectations"] > 10
    assert st["items"]["evaluated_expectations"] >= 6
    assert st["user_counts"]["n_rows"] == 3
    report.raise_for_failures()  # no-op
    md = report.markdown()
    assert "expect_compound_columns_to_be_unique" in md and "expect_column_values_to_be_in_set" in md
    assert md.count("| pass |") == len(report.results) == st["evaluated_expectations"]


def test_implicit_data_without_rating_passes():
    df = clean_interactions().drop(columns="rating")
    report = validate_dataset(df, clean_items(), CFG)
    assert report.success, report.markdown()
    assert not any(r["column"] == "rating" for r in report.results)


def test_object_dtype_strings_pass():
    """pandas 2 style object columns of Python strings are accepted."""
    df = clean_interactions().astype({"user_id": object, "item_id": object})
    items = clean_items().astype({"item_id": object, "title": object})
    report = validate_dataset(df, items, CFG)
    assert report.success, report.markdown()


# --- one broken expectation per case -------------------------------------------------------
# (name, mutate(inter, items) -> (inter, items), table, expectation, column, first example row,
#  unexpected_count, cfg overrides)


def _set(df, row, col, value):
    df.loc[row, col] = value
    return df


def _dup_row(inter, items):
    # line 10 repeats line 9 (same user, item and timestamp; another rating)
    inter.loc[10, "item_id"] = inter.loc[9, "item_id"]
    inter.loc[10, "timestamp"] = inter.loc[9, "timestamp"]
    return inter, items


def _rename_user(old, new):
    def f(inter, items):
        inter["user_id"] = inter["user_id"].replace(old, new)
        return inter, items
    return f


def _rename_user_object(old, new):
    """pandas 2 style object column in which one user's ids are ints."""
    def f(inter, items):
        ids = inter["user_id"].astype(object)
        ids[ids == old] = new
        return inter.assign(user_id=ids), items
    return f


def _null_timestamp(inter, items):
    inter["timestamp"] = inter["timestamp"].astype("Int64")
    inter.loc[6, "timestamp"] = pd.NA
    return inter, items


CASES = [
    ("rating_above_max", lambda i, it: (_set(i, 5, "rating", 7.0), it),
     "interactions", "expect_column_values_to_be_between", "rating", 5, 1, {}),
    ("rating_below_min", lambda i, it: (_set(i, 9, "rating", 0.0), it),
     "interactions", "expect_column_values_to_be_between", "rating", 9, 1, {}),
    ("rating_null", lambda i, it: (_set(i, 4, "rating", np.nan), it),
     "interactions", "expect_column_values_to_not_be_null", "rating", 4, 1, {}),
    ("user_id_null", lambda i, it: (_set(i, 3, "user_id", None), it),
     "interactions", "expect_column_values_to_not_be_null", "user_id", 3, 1, {}),
    ("item_id_null", lambda i, it: (_set(i, 7, "item_id", None), it),
     "interactions", "expect_column_values_to_not_be_null", "item_id", 7, 1, {}),
    ("timestamp_null", _null_timestamp,
     "interactions", "expect_column_values_to_not_be_null", "timestamp", 6, 1, {}),
    ("user_id_blank", _rename_user("u3", "  "),
     "interactions", "expect_column_values_to_match_regex", "user_id", 8, 3, {}),
    ("item_id_empty", lambda i, it: (_set(i, 6, "item_id", ""), it),
     "interactions", "expect_column_values_to_match_regex", "item_id", 6, 1, {"require_items": False}),
    ("timestamp_negative", lambda i, it: (_set(i, 10, "timestamp", -5), it),
     "interactions", "expect_column_values_to_be_between", "timestamp", 10, 1, {}),
    ("duplicate_interaction", _dup_row,
     "interactions", "expect_compound_columns_to_be_unique", "user_id,item_id,timestamp", 9, 2, {}),
    ("unknown_item", lambda i, it: (_set(i, 9, "item_id", "i999"), it),
     "interactions", "expect_column_values_to_be_in_set", "item_id", 9, 1, {}),
    ("too_few_interactions", lambda i, it: (_set(i, 6, "user_id", "u4"), it),
     "user_counts", "expect_column_values_to_be_between", "n_interactions", 6, 1, {}),
    ("items_duplicate_id", lambda i, it: (i, _set(it, 6, "item_id", "i1")),
     "items", "expect_column_values_to_be_unique", "item_id", 2, 2, {}),
    ("items_null_id", lambda i, it: (i, _set(it, 6, "item_id", None)),
     "items", "expect_column_values_to_not_be_null", "item_id", 6, 1, {}),
    ("items_empty_id", lambda i, it: (i, _set(it, 6, "item_id", "")),
     "items", "expect_column_values_to_match_regex", "item_id", 6, 1, {}),
    ("items_null_title", lambda i, it: (i, _set(it, 4, "title", None)),
     "items", "expect_column_values_to_not_be_null", "title", 4, 1, {}),
    ("user_id_int_dtype", lambda i, it: (i.assign(user_id=i["user_id"].str[1:].astype("int64")), it),
     "interactions", "expect_column_values_to_be_of_type", "user_id", None, 0, {}),
    ("user_id_mixed_objects", _rename_user_object("u2", 2),
     "interactions", "expect_column_values_to_be_of_type", "user_id", 5, 3, {}),
    ("items_id_int_dtype", lambda i, it: (i, it.assign(item_id=np.arange(1, 6))),
     "items", "expect_column_values_to_be_of_type", "item_id", None, 0, {"require_items": False}),
    ("rating_int_dtype", lambda i, it: (i.astype({"rating": "int64"}), it),
     "interactions", "expect_column_values_to_be_in_type_list", "rating", None, 0, {}),
    ("timestamp_float_dtype", lambda i, it: (i.astype({"timestamp": "float64"}), it),
     "interactions", "expect_column_values_to_be_in_type_list", "timestamp", None, 0, {}),
    ("missing_timestamp", lambda i, it: (i.drop(columns="timestamp"), it),
     "interactions", "expect_column_to_exist", "timestamp", None, 0, {}),
    ("missing_item_id", lambda i, it: (i.drop(columns="item_id"), it),
     "interactions", "expect_column_to_exist", "item_id", None, 0, {}),
    ("items_missing_title", lambda i, it: (i, it.drop(columns="title")),
     "items", "expect_column_to_exist", "title", None, 0, {}),
]


@pytest.mark.parametrize(
    "mutate,table,expectation,column,row,count,overrides",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_each_expectation_can_fail(mutate, table, expectation, column, row, count, overrides):
    inter, items = mutate(clean_interactions(), clean_items())
    cfg = CFG.model_copy(update=overrides)
    report = validate_dataset(inter, items, cfg)
    assert not report.success
    assert failing(report) == {(table, expectation, column)}, report.markdown()
    (f,) = report.failures
    assert f.unexpected_count == count
    assert f.source == (ITEM_SRC if table == "items" else INTER_SRC)
    if row is None:
        assert f.examples == []
        assert f.details  # observed dtype / missing column
    else:
        assert f.examples[0]["row"] == row
        for col in column.split(","):
            assert col in f.examples[0]
    line = f.describe()
    assert f.source in line and expectation in line and f"column {column}" in line
    if row is not None:
        assert f"row {row}" in line
    json.dumps(report.to_dict())
    if table == "user_counts":
        assert f.examples[0]["user_id"] == "u4" and f.examples[0]["n_interactions"] == 1
        assert "user_id='u4'" in line


def test_int_dtype_failure_reports_observed_dtype():
    inter = clean_interactions()
    inter["user_id"] = inter["user_id"].str[1:].astype("int64")
    report = validate_dataset(inter, clean_items(), CFG)
    (f,) = report.failures
    assert "observed dtype int64" in f.details and "expected str" in f.describe()


def test_describe_format():
    inter = _set(clean_interactions(), 5, "rating", 7.0)
    (f,) = validate_dataset(inter, clean_items(), CFG).failures
    assert f.describe() == (
        f"{INTER_SRC}: expect_column_values_to_be_between failed on column rating: 1 row, e.g. row 5 (rating=7.0). "
        "Ratings must lie in [validation.rating_min, validation.rating_max]."
    )
    assert f.examples[0] == {"row": 5, "user_id": "u2", "item_id": "i1", "rating": 7.0, "timestamp": 20}


def test_raise_for_failures_names_file_row_and_column():
    inter = _set(clean_interactions(), 5, "rating", 7.0)
    inter = _set(inter, 9, "item_id", "i999")
    report = validate_dataset(inter, clean_items(), CFG)
    with pytest.raises(DataValidationError) as err:
        report.raise_for_failures()
    assert isinstance(err.value, ValueError) and err.value.report is report
    msg = str(err.value)
    assert "2 expectations failed" in msg
    for f in report.failures:
        assert f.describe() in msg
    assert INTER_SRC in msg and "row 5" in msg and "column rating" in msg
    assert "row 9" in msg and "column item_id" in msg


def test_report_to_dict_is_json_serializable():
    inter = clean_interactions()
    inter = _set(inter, 3, "user_id", None)
    inter = _set(inter, 4, "rating", np.nan)
    inter = _set(inter, 5, "rating", 9.5)
    items = _set(clean_items(), 3, "title", None)
    report = validate_dataset(inter, items, CFG)
    d = report.to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back["success"] is False
    assert len(back["failures"]) == len(report.failures) == 4
    assert {"table", "expectation", "column", "unexpected_count", "examples", "source"} <= set(back["failures"][0])
    assert back["statistics"]["interactions"]["n_rows"] == 9
    assert len(back["results"]) == report.statistics["evaluated_expectations"]
    md = report.markdown()
    assert md.count("**FAIL**") == 4


def test_max_examples_caps_examples_not_count():
    inter = clean_interactions()
    inter["rating"] = 10.0
    report = validate_dataset(inter, clean_items(), CFG.model_copy(update={"max_examples": 3}))
    (f,) = report.failures
    assert f.unexpected_count == 9
    assert [e["row"] for e in f.examples] == [2, 3, 4]


def test_min_interactions_names_every_failing_user():
    report = validate_dataset(clean_interactions(), clean_items(), CFG.model_copy(update={"min_interactions_per_user": 4}))
    (f,) = report.failures
    assert f.table == "user_counts" and f.unexpected_count == 3
    assert [(e["row"], e["user_id"], e["n_interactions"]) for e in f.examples] == [(2, "u1", 3), (5, "u2", 3), (8, "u3", 3)]


def test_user_interaction_counts_index_is_first_source_line():
    counts = user_interaction_counts(clean_interactions())
    assert counts["user_id"].tolist() == ["u1", "u2", "u3"]
    assert counts["n_interactions"].tolist() == [3, 3, 3]
    assert counts.index.tolist() == [2, 5, 8]
    assert counts.attrs["source"] == INTER_SRC


def test_items_optional_unless_required():
    with pytest.raises(ValueError, match="require_items"):
        validate_dataset(clean_interactions(), None, CFG)
    inter = _set(clean_interactions(), 9, "item_id", "i999")
    report = validate_dataset(inter, None, CFG.model_copy(update={"require_items": False}))
    assert report.success, report.markdown()
    assert "items" not in report.statistics


def test_failure_dataclass_describe_without_source():
    f = ExpectationFailure(table="interactions", expectation="expect_column_to_exist", column="rating",
                           unexpected_count=0, examples=[], source=None, details="column is missing")
    assert f.describe() == ("interactions: expect_column_to_exist failed on column rating (column is missing). "
                            "Map your column with data.columns / data.item_columns (rrec config lists them).")
