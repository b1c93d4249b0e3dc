"""Read interactions and items into rrec's frame contract.

interactions: user_id (str), item_id (str), rating (float64, optional), timestamp (int64)
items:        item_id (str), title (str), year (Int64, nullable), genres (str, space-separated)

Every frame carries `attrs["source"]` (the file it came from) and an index equal to the row's
line number in that file (header = line 1), so validation and parse errors can name the row.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rrec_core.config import DataConfig

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
ITEM_COLUMNS = ("item_id", "title", "year", "genres")
# RecBole's ML-100K/ML-1M atomic field names -> ours
_ATOMIC_ALIASES = {"movie_title": "title", "release_year": "year", "class": "genres", "genre": "genres"}
_GROUPLENS_GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy "
    "Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


class DataFormatError(ValueError):
    """A raw file cannot be read into the frame contract; the message names file, row and column."""


@dataclass
class Dataset:
    interactions: pd.DataFrame
    items: pd.DataFrame | None
    name: str

    @property
    def n_users(self) -> int:
        return self.interactions["user_id"].nunique()

    @property
    def n_items(self) -> int:
        return self.interactions["item_id"].nunique()


def load_dataset(cfg: DataConfig, root: str | Path = ".") -> Dataset:
    path = Path(root) / cfg.path
    if not path.exists():
        raise FileNotFoundError(f"{path}: dataset not found (run `rrec data pull` for the default data)")
    if cfg.format == "atomic":
        ds = _load_atomic(path, cfg)
    elif cfg.format == "grouplens":
        ds = _load_grouplens(path)
    else:
        ds = _load_table(path, cfg)
    if cfg.min_rating is not None and "rating" in ds.interactions:
        inter = ds.interactions
        kept = inter[inter["rating"] >= cfg.min_rating]
        kept.attrs.update(inter.attrs)
        ds.interactions = kept
    return ds


# --- RecBole atomic files -------------------------------------------------------------------

def _load_atomic(path: Path, cfg: DataConfig) -> Dataset:
    inter_file = _single(path, "*.inter")
    item_files = sorted(path.glob("*.item"))
    name = inter_file.stem
    inter = _read_atomic(inter_file, {**_ATOMIC_ALIASES, **_invert(cfg.columns)}, cfg.encoding)
    items = (_read_atomic(item_files[0], {**_ATOMIC_ALIASES, **_invert(cfg.item_columns)}, cfg.encoding)
             if item_files else None)
    return Dataset(_finish_interactions(inter), _finish_items(items) if items is not None else None, name)


def _read_atomic(file: Path, aliases: dict[str, str], encoding: str = "utf-8") -> pd.DataFrame:
    # QUOTE_NONE: atomic files are plain TSV, a quote is part of a title
    df = _read_delimited(file, "\t", encoding, quoting=3)
    df.columns = [aliases.get(c.split(":")[0], c.split(":")[0]) for c in df.columns]
    return _with_lines(df, file, first_line=2)


def _read_delimited(file: Path, sep: str, encoding: str, header: int | None = 0, names=None,
                    quoting: int = 0) -> pd.DataFrame:
    """pd.read_csv, with every way a file can be unreadable turned into a DataFormatError naming the file,
    the line and what to do (pandas' own errors name neither the file nor a fix)."""
    data = file.read_bytes()
    if not data.strip():
        raise DataFormatError(f"{file}: the file is empty (expected a header line and one row per record)")
    if b"\x00" in data[:65536]:
        line = data[:data.index(b"\x00")].count(b"\n") + 1
        raise DataFormatError(f"{file}: line {line}: a NUL byte; this is a binary file, not delimited text")
    try:
        data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataFormatError(f"{file}: line {line}: bytes {data[e.start:e.end]!r} are not valid {encoding} "
                              f"(re-encode the file, e.g. `iconv -f latin1 -t utf-8`, or set data.encoding)") from None
    try:
        return pd.read_csv(file, sep=sep, header=header, names=names, dtype=str, keep_default_na=False,
                           na_values=[""], encoding=encoding, quoting=quoting)
    except pd.errors.ParserError as e:
        # pandas says "Expected 4 fields in line 7, saw 5" or "EOF inside string starting at row 3"
        hint = ("a field holds the delimiter (a tab inside a title?) or a line is broken"
                if "fields" in str(e) else "an unclosed quote")
        raise DataFormatError(f"{file}: {str(e).replace('Error tokenizing data. C error: ', '').strip()} "
                              f"({hint}; fields are separated by {sep!r})") from None


# --- GroupLens ml-100k layout (u.data, u.item) ------------------------------------------------

def _load_grouplens(path: Path) -> Dataset:
    data_file = path / "u.data"
    if not data_file.exists():
        raise FileNotFoundError(f"{data_file}: GroupLens layout expects u.data (and u.item)")
    inter = _read_delimited(data_file, "\t", "utf-8", header=None, names=list(INTERACTION_COLUMNS))
    inter = _with_lines(inter, data_file, first_line=1)
    items = None
    item_file = path / "u.item"
    if item_file.exists():
        raw = _read_delimited(item_file, "|", "latin-1", header=None)  # GroupLens ships u.item in latin-1
        raw = _with_lines(raw, item_file, first_line=1)
        if raw.shape[1] < 5 + len(_GROUPLENS_GENRES):
            raise DataFormatError(f"{item_file}: expected {5 + len(_GROUPLENS_GENRES)} '|'-separated columns, "
                                  f"found {raw.shape[1]}")
        flags = raw.iloc[:, 5:5 + len(_GROUPLENS_GENRES)].astype(str).eq("1").to_numpy()
        title = raw[1].fillna("")
        year = title.str.extract(r"\((\d{4})\)\s*$")[0]
        items = pd.DataFrame({
            "item_id": raw[0],
            "title": title.str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True),
            "year": year,
            "genres": [" ".join(g for g, f in zip(_GROUPLENS_GENRES, row) if f) for row in flags],
        }, index=raw.index)
        items.attrs.update(raw.attrs)
    return Dataset(_finish_interactions(inter), _finish_items(items) if items is not None else None, path.name)


# --- CSV / Parquet with a column mapping -----------------------------------------------------

def _load_table(path: Path, cfg: DataConfig) -> Dataset:
    if not cfg.interactions_file:
        raise ValueError("data.format=table needs data.interactions_file (and optionally data.items_file)")
    inter = _read_table(path / cfg.interactions_file, _invert(cfg.columns), cfg.encoding)
    items = _read_table(path / cfg.items_file, _invert(cfg.item_columns), cfg.encoding) if cfg.items_file else None
    return Dataset(_finish_interactions(inter), _finish_items(items) if items is not None else None,
                   Path(cfg.interactions_file).stem)


def _read_table(file: Path, aliases: dict[str, str], encoding: str = "utf-8") -> pd.DataFrame:
    if not file.exists():
        raise FileNotFoundError(f"{file}: not found")
    if file.suffix.lower() in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(file)
        except Exception as e:  # pyarrow raises its own types for truncated or non-Parquet files
            raise DataFormatError(f"{file}: not a readable Parquet file ({type(e).__name__}: {e})") from None
        df = df.astype({c: str for c in df.columns if df[c].dtype == object})
        first = 1  # no line numbers in Parquet: rows are numbered from 1
    else:
        sep = "\t" if file.suffix.lower() in (".tsv", ".tab") else ","
        df = _read_delimited(file, sep, encoding)
        first = 2
    df = df.rename(columns=aliases)
    return _with_lines(df, file, first_line=first)


# --- shared coercion -------------------------------------------------------------------------

def _finish_interactions(df: pd.DataFrame) -> pd.DataFrame:
    source = df.attrs["source"]
    missing = [c for c in ("user_id", "item_id") if c not in df.columns]
    if missing:
        raise DataFormatError(f"{source}: missing column(s) {missing}; found {list(df.columns)}"
                              f"{_delimiter_hint(df.columns)} "
                              "(map yours with data.columns: {user_id: <your column>, ...})")
    out = pd.DataFrame(index=df.index)
    out["user_id"] = df["user_id"].astype("str")
    out["item_id"] = df["item_id"].astype("str")
    if "rating" in df.columns:
        out["rating"] = _to_number(df["rating"], source, "rating").astype("float64")
    if "timestamp" in df.columns:
        ts = _to_number(df["timestamp"], source, "timestamp")
        if ts.isna().any():  # int64 has no missing value: name the row here rather than invent one
            row = ts.isna().idxmax()
            raise DataFormatError(f"{source}: row {row}, column 'timestamp': missing ({int(ts.isna().sum())} such "
                                  "rows; a truncated or short line?)")
        if not np.isfinite(ts.to_numpy(dtype="float64")).all():
            row = (~np.isfinite(ts.to_numpy(dtype="float64"))).argmax()
            raise DataFormatError(f"{source}: row {ts.index[row]}, column 'timestamp': {df['timestamp'].iloc[row]!r} "
                                  "is not a finite number")
        out["timestamp"] = ts.round().astype("int64")
    else:
        out["timestamp"] = pd.Series(range(len(df)), index=df.index, dtype="int64")
    for c in ("user_id", "item_id"):  # nulls stay visible to validation rather than becoming "nan"
        out.loc[df[c].isna(), c] = None
    out.attrs["source"] = source
    return out


def _finish_items(df: pd.DataFrame) -> pd.DataFrame:
    source = df.attrs["source"]
    if "item_id" not in df.columns:
        raise DataFormatError(f"{source}: missing column 'item_id'; found {list(df.columns)}")
    out = pd.DataFrame(index=df.index)
    out["item_id"] = df["item_id"].astype("str")
    out["title"] = df["title"].astype("str") if "title" in df.columns else out["item_id"]
    # year is descriptive text for the encoder: an unparseable year (ML-100K has 'unkonwn') is missing
    year = pd.to_numeric(df["year"], errors="coerce") if "year" in df.columns else pd.Series(float("nan"), index=df.index)
    out["year"] = year.astype("float64").round().astype("Int64")
    genres = df["genres"] if "genres" in df.columns else pd.Series("", index=df.index)
    out["genres"] = genres.fillna("").astype("str").str.replace("|", " ", regex=False)
    out.attrs["source"] = source
    return out


def _to_number(col: pd.Series, source: str, name: str) -> pd.Series:
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna() & col.notna() & (col.astype("str").str.strip() != "")
    if bad.any():
        row = bad.idxmax()
        raise DataFormatError(f"{source}: row {row}, column '{name}': {col[row]!r} is not a number "
                              f"({int(bad.sum())} such rows)")
    return num


def _delimiter_hint(columns) -> str:
    """' (the header looks ;-separated)' when the only column name holds a likelier delimiter."""
    if len(columns) == 1:
        for sep in (";", "\t", ",", "|"):
            if sep in str(columns[0]):
                return f" (the header looks {sep!r}-separated; this file type is read with another delimiter)"
    return ""


def _with_lines(df: pd.DataFrame, file: Path, first_line: int) -> pd.DataFrame:
    df.index = pd.RangeIndex(first_line, first_line + len(df), name="row")
    df.attrs["source"] = str(file)
    return df


def _single(path: Path, pattern: str) -> Path:
    found = sorted(path.glob(pattern))
    if len(found) != 1:
        raise FileNotFoundError(f"{path}: expected exactly one {pattern} file, found {[f.name for f in found]}")
    return found[0]


def _invert(mapping: dict[str, str]) -> dict[str, str]:
    """params map our name -> the file's name; renaming needs the reverse."""
    return {theirs: ours for ours, theirs in mapping.items()}
