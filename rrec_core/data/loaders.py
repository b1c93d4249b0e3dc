"""Read interactions and items into rrec's frame contract.

interactions: user_id (str), item_id (str), rating (float64, optional), timestamp (int64)
items:        item_id (str), title (str), year (Int64, nullable), genres (str, space-separated)

Every frame carries `attrs["source"]` (the file it came from) and an index equal to the row's
line number in that file (header = line 1), so validation and parse errors can name the row.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    inter = _read_atomic(inter_file, {**_ATOMIC_ALIASES, **_invert(cfg.columns)})
    items = _read_atomic(item_files[0], {**_ATOMIC_ALIASES, **_invert(cfg.item_columns)}) if item_files else None
    return Dataset(_finish_interactions(inter), _finish_items(items) if items is not None else None, name)


def _read_atomic(file: Path, aliases: dict[str, str]) -> pd.DataFrame:
    df = pd.read_csv(file, sep="\t", dtype=str, keep_default_na=False, na_values=[""],
                     encoding="utf-8", encoding_errors="replace", quoting=3)
    df.columns = [aliases.get(c.split(":")[0], c.split(":")[0]) for c in df.columns]
    return _with_lines(df, file, first_line=2)


# --- GroupLens ml-100k layout (u.data, u.item) ------------------------------------------------

def _load_grouplens(path: Path) -> Dataset:
    data_file = path / "u.data"
    if not data_file.exists():
        raise FileNotFoundError(f"{data_file}: GroupLens layout expects u.data (and u.item)")
    inter = pd.read_csv(data_file, sep="\t", header=None, dtype=str, names=list(INTERACTION_COLUMNS))
    inter = _with_lines(inter, data_file, first_line=1)
    items = None
    item_file = path / "u.item"
    if item_file.exists():
        raw = pd.read_csv(item_file, sep="|", header=None, dtype=str, encoding="latin-1")
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
    inter = _read_table(path / cfg.interactions_file, _invert(cfg.columns))
    items = _read_table(path / cfg.items_file, _invert(cfg.item_columns)) if cfg.items_file else None
    return Dataset(_finish_interactions(inter), _finish_items(items) if items is not None else None,
                   Path(cfg.interactions_file).stem)


def _read_table(file: Path, aliases: dict[str, str]) -> pd.DataFrame:
    if not file.exists():
        raise FileNotFoundError(f"{file}: not found")
    if file.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(file)
        df = df.astype({c: str for c in df.columns if df[c].dtype == object})
        first = 1  # no line numbers in Parquet: rows are numbered from 1
    else:
        sep = "\t" if file.suffix.lower() in (".tsv", ".tab") else ","
        df = pd.read_csv(file, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
        first = 2
    df = df.rename(columns=aliases)
    return _with_lines(df, file, first_line=first)


# --- shared coercion -------------------------------------------------------------------------

def _finish_interactions(df: pd.DataFrame) -> pd.DataFrame:
    source = df.attrs["source"]
    missing = [c for c in ("user_id", "item_id") if c not in df.columns]
    if missing:
        raise DataFormatError(f"{source}: missing column(s) {missing}; found {list(df.columns)} "
                              "(map yours with data.columns: {{user_id: <your column>, ...}})")
    out = pd.DataFrame(index=df.index)
    out["user_id"] = df["user_id"].astype("str")
    out["item_id"] = df["item_id"].astype("str")
    if "rating" in df.columns:
        out["rating"] = _to_number(df["rating"], source, "rating").astype("float64")
    if "timestamp" in df.columns:
        ts = _to_number(df["timestamp"], source, "timestamp")
        out["timestamp"] = ts.fillna(-1).round().astype("int64")
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
