"""Data validation of the interaction and item tables with a Great Expectations 1.x suite.

`validate_dataset(interactions, items, cfg)` runs one expectation suite per table (interactions,
items, and a derived per-user count table) through the GX 1.x API — ephemeral context → pandas data
source → dataframe asset → whole-dataframe batch definition → `ValidationDefinition.run(
batch_parameters={"dataframe": df})` — and turns GX's results into a small, JSON-friendly
`ValidationReport`. Every failure names the source file, the expectation, the column(s) and example
rows by their *source line number* (the loaders index each frame by the 1-based line number of the
row in its file, header = line 1).

Great Expectations is imported lazily (its import costs ~4 s) and its context is built once per
process and reused, so only the first call pays for it.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rrec_core.config import ValidationConfig

__all__ = [
    "DataValidationError",
    "ExpectationFailure",
    "ValidationReport",
    "validate_dataset",
]

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")  # required; `rating` is optional
ITEM_COLUMNS = ("item_id", "title")  # required in the item table
DUPLICATE_KEY = ("user_id", "item_id", "timestamp")

# Accepted dtypes. GX reports pandas 3 string columns (both `str` and `string` dtype) as "str";
# an object column is checked value by value against Python `str`, so object dtype strings pass
# and mixed objects fail with the offending rows.
STRING_TYPE = "str"
# Nullable extension dtypes must be named by their class ("Int64Dtype"): GX resolves type names
# via numpy, then `getattr(pandas, name)`, so the string "Int64" silently never matches.
TIMESTAMP_TYPES = ["int64", "Int64Dtype", "int32", "Int32Dtype"]
RATING_TYPES = ["float64", "Float64Dtype", "float32", "Float32Dtype"]

# non-empty, no leading or trailing whitespace: " 12" and "12" would silently be two ids
_CLEAN_ID = r"^\S(?:.*\S)?$"

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Report types
# --------------------------------------------------------------------------------------------


@dataclass
class ExpectationFailure:
    """One failed expectation, with example rows named by their source line number."""

    table: str  # "interactions" | "items" | "user_counts"
    expectation: str  # GX expectation type, e.g. "expect_column_values_to_be_between"
    column: str | None  # column(s) checked, e.g. "rating" or "user_id,item_id,timestamp"
    unexpected_count: int
    examples: list[dict]  # up to cfg.max_examples rows: {"row": <source line>, **row values}
    source: str | None  # file path from df.attrs["source"]
    details: str | None = None  # what GX observed where there are no rows (dtype, missing column)

    def _shown_columns(self) -> list[str]:
        cols = self.column.split(",") if self.column else []
        if self.table == "user_counts" and "user_id" not in cols:
            cols = ["user_id", *cols]
        return cols

    def describe(self) -> str:
        """One line: "<source>: <expectation> failed on column <col>: N rows, e.g. row 17 (rating=7.0)"."""
        where = self.source or self.table
        target = f"column {self.column}" if self.column else f"table {self.table}"
        text = f"{where}: {self.expectation} failed on {target}"
        if self.examples or self.unexpected_count:
            noun = "users" if self.table == "user_counts" else "rows"
            if self.unexpected_count == 1:
                noun = noun[:-1]
            text += f": {self.unexpected_count} {noun}"
        if self.examples:
            shown = self._shown_columns()
            parts = []
            for ex in self.examples:
                vals = ", ".join(f"{c}={_short(ex[c])}" if isinstance(ex.get(c), str) else f"{c}={ex.get(c)}"
                                 for c in shown if c in ex)
                parts.append(f"row {ex.get('row')}" + (f" ({vals})" if vals else ""))
            text += ", e.g. " + ", ".join(parts)
        if self.details:
            text += f" ({self.details})" if not (self.examples or self.unexpected_count) else f"; {self.details}"
        advice = self.advice()
        return text + (f". {advice}" if advice else "")

    def advice(self) -> str | None:
        """What to do about this failure, in one sentence (None where the expectation says it all)."""
        col, exp = self.column or "", self.expectation
        if exp == "expect_table_row_count_to_be_between":
            return "The file has a header but no rows."
        if exp == "expect_column_to_exist":
            return "Map your column with data.columns / data.item_columns (rrec config lists them)."
        if exp == "expect_column_values_to_not_be_null":
            return f"Fill or drop the rows with an empty {col}."
        if exp == "expect_column_values_to_match_regex":
            return "Ids must be non-empty, without leading or trailing spaces: strip them."
        if exp == "expect_column_value_lengths_to_be_between":
            setting = "max_id_chars" if col.endswith("_id") else "max_text_chars"
            return f"Longer than validation.{setting}: a broken line, or a field holding more than one value?"
        if exp == "expect_column_values_to_be_between":
            return {
                "rating": "Ratings must lie in [validation.rating_min, validation.rating_max].",
                "timestamp": "Timestamps are seconds since 1970 and not in the future (milliseconds? divide by "
                             "1000; validation.max_timestamp).",
                "year": "Release years must lie in [validation.year_min, validation.year_max].",
                "n_interactions": "These users have fewer than validation.min_interactions_per_user interactions: "
                                  "drop them or lower the setting.",
            }.get(col)
        if exp in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
            return "Each key may occur once: remove the duplicates (they disagree or double-count)."
        if exp == "expect_column_values_to_be_in_set":
            return ("These items are missing from the item table: add them, or set validation.require_items: "
                    "false.")
        if exp in ("expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"):
            return "Check the column mapping (data.columns) and the values of this column."
        return None


def _short(value: str, limit: int = 60) -> str:
    """repr of a value, cut to `limit` characters with its length named (a 1 MB title is one example)."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} characters)"


@dataclass
class ValidationReport:
    success: bool
    failures: list[ExpectationFailure]
    statistics: dict  # per table: evaluated/successful expectations, rows; n_rows, n_users, n_items
    # every expectation that ran: {"table", "expectation", "column", "success", "unexpected_count"}
    results: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serializable dict (examples hold plain Python scalars)."""
        return {
            "success": bool(self.success),
            "statistics": _jsonable(self.statistics),
            "failures": [_jsonable(asdict(f)) for f in self.failures],
            "results": _jsonable(self.results),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def markdown(self) -> str:
        """A Markdown table of every expectation that ran: table, expectation, column, result, count."""
        status = "passed" if self.success else f"FAILED ({len(self.failures)} failing expectations)"
        lines = [
            f"**Data validation {status}**",
            "",
            "| table | expectation | column | result | unexpected |",
            "|---|---|---|---|---|",
        ]
        for r in self.results:
            col = r.get("column") or "—"
            res = "pass" if r["success"] else "**FAIL**"
            lines.append(f"| {r['table']} | `{r['expectation']}` | {col} | {res} | {r['unexpected_count']} |")
        if self.failures:
            lines += ["", "Failures:", ""]
            lines += [f"- {f.describe()}" for f in self.failures]
        return "\n".join(lines) + "\n"

    def raise_for_failures(self) -> None:
        """Raise `DataValidationError` (listing every failure's `describe()`) unless all passed."""
        if not self.success:
            raise DataValidationError(self)


class DataValidationError(ValueError):
    """Raised by `ValidationReport.raise_for_failures`; carries the report as `.report`."""

    def __init__(self, report: ValidationReport):
        self.report = report
        n = len(report.failures)
        head = f"data validation failed: {n} expectation{'s' if n != 1 else ''} failed"
        super().__init__("\n".join([head, *(f"  - {f.describe()}" for f in report.failures)]))


# --------------------------------------------------------------------------------------------
# The GX session: one ephemeral context per process, one dataframe asset per table
# --------------------------------------------------------------------------------------------

_TABLES = ("interactions", "items", "user_counts")


class _GXSession:
    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas(name="rrec")
        self.batch_definitions = {
            t: source.add_dataframe_asset(name=t).add_batch_definition_whole_dataframe("whole_table")
            for t in _TABLES
        }
        self.lock = threading.Lock()

    def run(self, table: str, df: pd.DataFrame, expectations: list, result_format: dict):
        """Run `expectations` over `df`; returns GX's ExpectationSuiteValidationResult."""
        gx = self.gx
        tag = uuid.uuid4().hex[:12]
        with self.lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, e in enumerate(expectations):
                e.meta = {**(e.meta or {}), "rrec_order": i}  # GX reorders results; keep ours
            # build the suite whole, then add it: `add_expectation` on a suite already in the
            # context re-serializes the suite into the store on every call (quadratic)
            suite = self.context.suites.add(gx.ExpectationSuite(name=f"rrec_{table}_{tag}", expectations=expectations))
            vd = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=f"rrec_{table}_{tag}", data=self.batch_definitions[table], suite=suite)
            )
            try:
                return vd.run(batch_parameters={"dataframe": df}, result_format=result_format)
            finally:  # keep the cached context from growing with every call
                self.context.validation_definitions.delete(vd.name)
                self.context.suites.delete(suite.name)


_SESSION: _GXSession | None = None
_SESSION_LOCK = threading.Lock()


def _session() -> _GXSession:
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = _GXSession()
        return _SESSION


# --------------------------------------------------------------------------------------------
# Suites
# --------------------------------------------------------------------------------------------


def _is_stringish(s: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(s.dtype) or s.dtype == object


def _is_number(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def _interaction_expectations(df: pd.DataFrame, items: pd.DataFrame | None, cfg: ValidationConfig) -> list:
    import great_expectations.expectations as gxe

    exps: list = [gxe.ExpectTableRowCountToBeBetween(min_value=1)]  # a header-only file is no data
    has_rating = "rating" in df.columns
    for col in INTERACTION_COLUMNS:
        exps.append(gxe.ExpectColumnToExist(column=col))
    present = [c for c in INTERACTION_COLUMNS if c in df.columns]
    if has_rating:
        present.append("rating")

    # dtypes
    for col in ("user_id", "item_id"):
        if col in present:
            exps.append(gxe.ExpectColumnValuesToBeOfType(column=col, type_=STRING_TYPE))
    if "timestamp" in present:
        exps.append(gxe.ExpectColumnValuesToBeInTypeList(column="timestamp", type_list=TIMESTAMP_TYPES))
    if has_rating:
        exps.append(gxe.ExpectColumnValuesToBeInTypeList(column="rating", type_list=RATING_TYPES))

    # no nulls
    for col in present:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col))

    # id ranges: non-empty ids, non-negative timestamps, ratings on the scale
    for col in ("user_id", "item_id"):
        if col in present and _is_stringish(df[col]):
            exps.append(gxe.ExpectColumnValuesToMatchRegex(column=col, regex=_CLEAN_ID))
            exps.append(gxe.ExpectColumnValueLengthsToBeBetween(column=col, max_value=cfg.max_id_chars))
    if "timestamp" in present and _is_number(df["timestamp"]):
        latest = cfg.max_timestamp if cfg.max_timestamp is not None else int(time.time()) + 86400
        exps.append(gxe.ExpectColumnValuesToBeBetween(column="timestamp", min_value=0, max_value=latest))
    if has_rating and _is_number(df["rating"]):
        exps.append(gxe.ExpectColumnValuesToBeBetween(column="rating", min_value=cfg.rating_min, max_value=cfg.rating_max))

    # duplicates
    if all(c in present for c in DUPLICATE_KEY):
        exps.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(DUPLICATE_KEY)))

    # referential integrity against the item table
    if cfg.require_items and items is not None and "item_id" in present and "item_id" in items.columns:
        known = pd.unique(items["item_id"].dropna()).tolist()
        exps.append(gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=known))
    return exps


def _item_expectations(items: pd.DataFrame, cfg: ValidationConfig) -> list:
    import great_expectations.expectations as gxe

    exps: list = [gxe.ExpectTableRowCountToBeBetween(min_value=1),
                  *(gxe.ExpectColumnToExist(column=c) for c in ITEM_COLUMNS)]
    if "item_id" in items.columns:
        exps += [
            gxe.ExpectColumnValuesToBeOfType(column="item_id", type_=STRING_TYPE),
            gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
            gxe.ExpectColumnValuesToBeUnique(column="item_id"),
        ]
        if _is_stringish(items["item_id"]):
            exps.append(gxe.ExpectColumnValuesToMatchRegex(column="item_id", regex=_CLEAN_ID))
            exps.append(gxe.ExpectColumnValueLengthsToBeBetween(column="item_id", max_value=cfg.max_id_chars))
    if "title" in items.columns:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column="title"))
    for col in ("title", "genres"):
        if col in items.columns and _is_stringish(items[col]):
            exps.append(gxe.ExpectColumnValueLengthsToBeBetween(column=col, max_value=cfg.max_text_chars))
    if "year" in items.columns and _is_number(items["year"]):
        latest = cfg.year_max if cfg.year_max is not None else time.gmtime().tm_year + 1
        exps.append(gxe.ExpectColumnValuesToBeBetween(column="year", min_value=cfg.year_min, max_value=latest))
    return exps


def user_interaction_counts(interactions: pd.DataFrame) -> pd.DataFrame:
    """Interactions per user, indexed by the source line of each user's first interaction.

    Columns: `user_id`, `n_interactions`. Users with a null id are left out (the null check on the
    interactions flags them).
    """
    tmp = pd.DataFrame({"user_id": interactions["user_id"].to_numpy(), "row": interactions.index.to_numpy()})
    g = tmp.groupby("user_id", sort=False, dropna=True)["row"]
    first, size = g.first(), g.size()
    counts = pd.DataFrame(
        {"user_id": first.index.to_numpy(), "n_interactions": size.to_numpy().astype("int64")},
        index=pd.Index(first.to_numpy(), name="row"),
    )
    counts.attrs = dict(interactions.attrs)
    return counts


def _count_expectations(cfg: ValidationConfig) -> list:
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToBeBetween(column="n_interactions", min_value=cfg.min_interactions_per_user)]


# --------------------------------------------------------------------------------------------
# Turning GX results into the report
# --------------------------------------------------------------------------------------------


def _py(v: Any) -> Any:
    """A plain JSON-friendly Python scalar."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, (pd.Timestamp,)):
        return v.isoformat()
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return _py(obj)


def _column_label(kwargs: dict) -> str | None:
    if kwargs.get("column_list"):
        return ",".join(kwargs["column_list"])
    return kwargs.get("column")


def _example_rows(df: pd.DataFrame, index_values: list, max_examples: int) -> list[dict]:
    examples: list[dict] = []
    for idx in index_values:
        if len(examples) >= max_examples:
            break
        if isinstance(idx, dict):  # a named index: GX gives {index_name: label, column: value}
            idx = idx.get(df.index.name, next(iter(idx.values()), None))
        try:
            row = df.loc[[idx]].iloc[0]
        except (KeyError, IndexError):
            examples.append({"row": _py(idx)})
            continue
        examples.append({"row": _py(idx), **{str(k): _py(v) for k, v in row.items()}})
    return examples


def _collect(table: str, df: pd.DataFrame, result, cfg: ValidationConfig,
             rows: list[dict], failures: list[ExpectationFailure]) -> dict:
    source = df.attrs.get("source")
    source = str(source) if source is not None else None
    ordered = sorted(result.results, key=lambda res: (res.expectation_config.meta or {}).get("rrec_order", 0))
    for res in ordered:
        conf = res.expectation_config
        kwargs = dict(conf.kwargs)
        column = _column_label(kwargs)
        r = dict(res.result or {})
        unexpected = int(r.get("unexpected_count") or 0)
        exc = res.exception_info or {}
        raised = bool(exc.get("raised_exception")) if isinstance(exc, dict) else False
        if not raised and isinstance(exc, dict):  # GX nests per-metric exception info
            raised = any(isinstance(v, dict) and v.get("raised_exception") for v in exc.values())
        rows.append({"table": table, "expectation": conf.type, "column": column,
                     "success": bool(res.success), "unexpected_count": unexpected})
        if res.success:
            continue
        details = None
        if raised:
            msg = exc.get("exception_message") if isinstance(exc, dict) else None
            if not msg:
                msg = next((v.get("exception_message") for v in exc.values()
                            if isinstance(v, dict) and v.get("exception_message")), None)
            details = f"GX raised: {msg}"
        elif conf.type == "expect_column_to_exist":
            details = "column is missing"
        elif "observed_value" in r and conf.type in ("expect_column_values_to_be_of_type",
                                                     "expect_column_values_to_be_in_type_list"):
            expected = kwargs.get("type_") or "|".join(kwargs.get("type_list") or [])
            # GX reports numpy's scalar type name ("int64" for Int64); name the pandas dtype instead
            observed = df[column].dtype if column in df.columns else r["observed_value"]
            details = f"observed dtype {observed}, expected {expected}"
        examples = _example_rows(df, list(r.get("partial_unexpected_index_list") or []), cfg.max_examples)
        failures.append(ExpectationFailure(
            table=table, expectation=conf.type, column=column, unexpected_count=unexpected,
            examples=examples, source=source, details=details,
        ))
    stats = result.statistics
    return {
        "evaluated_expectations": int(stats["evaluated_expectations"]),
        "successful_expectations": int(stats["successful_expectations"]),
        "n_rows": int(len(df)),
    }


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def validate_dataset(interactions: pd.DataFrame, items: pd.DataFrame | None,
                     cfg: ValidationConfig | None = None) -> ValidationReport:
    """Validate the interaction table (and the item table, if given) with a GX 1.x suite.

    Raises `ValueError` if `cfg.require_items` is set but `items` is None (a wiring error, not a
    data error). Data problems never raise here: they come back as failures in the report; call
    `report.raise_for_failures()` to turn them into a `DataValidationError`.
    """
    cfg = cfg or ValidationConfig()
    if cfg.require_items and items is None:
        raise ValueError("validation.require_items is set but no item table was given")
    max_examples = max(int(cfg.max_examples), 0)
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": max(max_examples, 1)}
    # SUMMARY returns partial_unexpected_index_list: the df index labels, i.e. source line numbers.

    session = _session()
    rows: list[dict] = []
    failures: list[ExpectationFailure] = []
    stats: dict[str, Any] = {}

    res = session.run("interactions", interactions, _interaction_expectations(interactions, items, cfg), result_format)
    stats["interactions"] = _collect("interactions", interactions, res, cfg, rows, failures)

    if items is not None:
        res = session.run("items", items, _item_expectations(items, cfg), result_format)
        stats["items"] = _collect("items", items, res, cfg, rows, failures)

    if "user_id" in interactions.columns:
        counts = user_interaction_counts(interactions)
        res = session.run("user_counts", counts, _count_expectations(cfg), result_format)
        stats["user_counts"] = _collect("user_counts", counts, res, cfg, rows, failures)

    stats["n_rows"] = int(len(interactions))
    stats["n_users"] = int(interactions["user_id"].nunique()) if "user_id" in interactions.columns else None
    stats["n_items"] = int(interactions["item_id"].nunique()) if "item_id" in interactions.columns else None
    stats["n_catalog_items"] = int(len(items)) if items is not None else None
    stats["evaluated_expectations"] = len(rows)
    stats["successful_expectations"] = sum(r["success"] for r in rows)
    for f in failures:
        f.examples = f.examples[:max_examples]
    return ValidationReport(success=not failures, failures=failures, statistics=stats, results=rows)
