import pandas as pd
import pytest

from rrec_core.config import DataConfig
from rrec_core.data import DataFormatError, load_dataset


def test_atomic_loader_contract(tiny_data):
    ds = load_dataset(DataConfig(path=str(tiny_data)))
    inter, items = ds.interactions, ds.items
    assert list(inter.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert inter["user_id"].dtype == "str" and inter["timestamp"].dtype == "int64"
    assert inter.index[0] == 2  # line numbers: header is line 1
    assert inter.attrs["source"].endswith("tiny.inter")
    assert {"item_id", "title", "year", "genres"} <= set(items.columns)
    assert items["year"].dtype == "Int64"
    assert ds.n_users == 40


def test_atomic_parse_error_names_file_row_column(tiny_data):
    f = tiny_data / "tiny.inter"
    lines = f.read_text().splitlines()
    parts = lines[4].split("\t")
    parts[2] = "five"
    lines[4] = "\t".join(parts)
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as e:
        load_dataset(DataConfig(path=str(tiny_data)))
    msg = str(e.value)
    assert "tiny.inter" in msg and "row 5" in msg and "'rating'" in msg and "five" in msg


def test_grouplens_layout(tmp_path):
    d = tmp_path / "ml"
    d.mkdir()
    (d / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t3\t881250950\n")
    flags = ["0"] * 19
    flags[1] = flags[5] = "1"
    (d / "u.item").write_text("10|Heat (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n")
    ds = load_dataset(DataConfig(path=str(d), format="grouplens"))
    assert ds.interactions["item_id"].tolist() == ["10", "10"]
    assert ds.interactions.index[0] == 1  # no header: first row is line 1
    row = ds.items.iloc[0]
    assert row["title"] == "Heat" and row["year"] == 1995 and row["genres"] == "Action Comedy"


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_table_loader_with_column_mapping(tmp_path, ext):
    df = pd.DataFrame({"uid": ["a", "b", "a"], "sku": ["x", "y", "y"], "stars": [5, 3, 4], "ts": [3, 2, 1]})
    items = pd.DataFrame({"sku": ["x", "y"], "name": ["Xbox", "Yoyo"], "cat": ["games|toys", "toys"]})
    if ext == "csv":
        df.to_csv(tmp_path / "inter.csv", index=False)
        items.to_csv(tmp_path / "items.csv", index=False)
    else:
        df.to_parquet(tmp_path / "inter.parquet")
        items.to_parquet(tmp_path / "items.parquet")
    cfg = DataConfig(path=str(tmp_path), format="table", interactions_file=f"inter.{ext}", items_file=f"items.{ext}",
                     columns={"user_id": "uid", "item_id": "sku", "rating": "stars", "timestamp": "ts"},
                     item_columns={"item_id": "sku", "title": "name", "genres": "cat"})
    ds = load_dataset(cfg)
    assert ds.interactions["user_id"].tolist() == ["a", "b", "a"]
    assert ds.interactions["rating"].tolist() == [5.0, 3.0, 4.0]
    assert ds.items["genres"].tolist() == ["games toys", "toys"]
    assert ds.items["year"].isna().all()


def test_table_loader_missing_mapped_column(tmp_path):
    pd.DataFrame({"u": ["a"], "i": ["x"]}).to_csv(tmp_path / "inter.csv", index=False)
    with pytest.raises(DataFormatError, match="missing column"):
        load_dataset(DataConfig(path=str(tmp_path), format="table", interactions_file="inter.csv"))


def test_min_rating_filter(tiny_data):
    full = load_dataset(DataConfig(path=str(tiny_data)))
    kept = load_dataset(DataConfig(path=str(tiny_data), min_rating=4))
    assert 0 < len(kept.interactions) < len(full.interactions)
    assert (kept.interactions["rating"] >= 4).all()
