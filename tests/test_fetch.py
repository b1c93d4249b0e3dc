"""`rrec data pull` (rrec_core.data.fetch): data/ is restored only from bytes whose DVC hash equals
data.dvc's pin. Local fake sources stand in for dvc / GroupLens / the recbole wheel: no network."""
from pathlib import Path

import pytest
import yaml

from rrec_core.data import fetch
from rrec_core.data.fetch import DataPullError, dir_md5, pull_data, verify

ROOT = Path(__file__).resolve().parents[1]

# Three files, one in a subfolder and one empty, exactly as `dvc add data` (DVC 3.67.1) pins them.
FILES = {"a.txt": b"hello\n", "empty": b"", "sub/x.inter": b"user_id:token\titem_id:token\n1\t2\n"}
DVC_PIN = {"md5": "3b6da56bb86900abbc047ef38bb2a4cb.dir", "size": 38, "nfiles": 3, "hash": "md5", "path": "data"}


def write_tree(folder: Path, files: dict) -> Path:
    for rel, blob in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(blob)
    return folder


def snapshot(folder: Path) -> dict:
    """Every path under folder (dirs too) -> its bytes (None for a dir)."""
    return {p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "data.dvc").write_text(yaml.safe_dump({"outs": [DVC_PIN]}))
    return tmp_path


@pytest.fixture
def sources(monkeypatch):
    """Replaces fetch.SOURCES with local fakes; returns the list of the sources called."""
    calls = []

    def stage_files(files):
        def source(root, stage):
            calls.append(source.name)
            return write_tree(stage / "data", files)
        return source

    def unreachable(root, stage):
        calls.append("unreachable")
        raise OSError("no route to host")

    fakes = {"good": stage_files(FILES),
             # one byte changed, same names and sizes: only the content hash tells it apart
             "tampered": stage_files({**FILES, "a.txt": b"hellO\n"}),
             "extra_file": stage_files({**FILES, "README": b"x"}),
             "missing_file": stage_files({k: v for k, v in FILES.items() if k != "empty"}),
             "unreachable": unreachable}
    for name, fn in fakes.items():
        fn.name = name
    monkeypatch.setattr(fetch, "SOURCES", fakes)
    return calls


def test_dir_md5_is_dvcs_hash(tmp_path):
    """The hash the check relies on is DVC's own: pinned value from `dvc add`, and the repo's data."""
    assert dir_md5(write_tree(tmp_path / "data", FILES)) == (DVC_PIN["md5"], 3, 38)
    pin = fetch.read_dvc_pin(ROOT / "data.dvc")
    if not (ROOT / pin["path"]).is_dir():
        pytest.skip("data/ not pulled in this checkout")
    assert dir_md5(ROOT / pin["path"]) == (pin["md5"], pin["nfiles"], pin["size"])


@pytest.mark.parametrize("bad", ["tampered", "extra_file", "missing_file"])
def test_mismatching_source_is_refused_and_writes_nothing(root, sources, bad):
    before = snapshot(root)
    with pytest.raises(DataPullError, match=rf"{bad}: hash [0-9a-f]{{32}}\.dir != data\.dvc's {DVC_PIN['md5']}"):
        pull_data(root, sources=(bad,))
    assert sources == [bad]
    assert not (root / "data").exists()
    assert snapshot(root) == before  # no data/, no staging folder left behind, data.dvc as it was


@pytest.mark.parametrize("bad", ["tampered", "extra_file"])
def test_mismatching_source_never_replaces_existing_data(root, sources, bad):
    """Stale data already in data/ (not the pinned version) stays exactly as it is."""
    write_tree(root / "data", {"old.inter": b"stale but someone's\n"})
    before = snapshot(root)
    with pytest.raises(DataPullError):
        pull_data(root, sources=(bad,))
    with pytest.raises(DataPullError):
        pull_data(root, sources=(bad,), force=True)
    assert snapshot(root) == before


def test_matching_source_is_accepted(root, sources):
    got = pull_data(root, sources=("good",))
    assert got == {"source": "good", "md5": DVC_PIN["md5"], "path": str(root / "data")}
    assert snapshot(root / "data") == {"a.txt": FILES["a.txt"], "empty": b"", "sub": None,
                                       "sub/x.inter": FILES["sub/x.inter"]}
    assert verify(root / "data", DVC_PIN)
    assert sorted(p.name for p in root.iterdir()) == ["data", "data.dvc"]  # staging cleaned up


def test_sources_tried_in_order_until_one_matches(root, sources):
    got = pull_data(root, sources=("unreachable", "tampered", "good", "extra_file"))
    assert got["source"] == "good" and sources == ["unreachable", "tampered", "good"]
    assert dir_md5(root / "data")[0] == DVC_PIN["md5"]
    with pytest.raises(DataPullError) as err:
        pull_data(root, sources=("unreachable", "tampered"), force=True)
    assert "unreachable: OSError: no route to host" in str(err.value) and "tampered: hash" in str(err.value)
    assert dir_md5(root / "data")[0] == DVC_PIN["md5"]  # the good copy survived the failed forced pull


def test_matching_source_replaces_stale_data(root, sources):
    write_tree(root / "data", {"old.inter": b"stale\n"})
    assert pull_data(root, sources=("tampered", "good"))["source"] == "good"
    assert snapshot(root / "data") == snapshot(write_tree(root.parent / "want", FILES))
    assert sorted(p.name for p in root.iterdir()) == ["data", "data.dvc"]  # no .data.old left


def test_present_data_is_not_fetched_again(root, sources):
    write_tree(root / "data", FILES)
    assert pull_data(root, sources=("tampered",)) == {"source": "present", "md5": DVC_PIN["md5"],
                                                       "path": str(root / "data")}
    assert sources == []
    assert pull_data(root, sources=("good",), force=True)["source"] == "good" and sources == ["good"]


def test_missing_pin_or_unknown_source(tmp_path, sources):
    with pytest.raises(DataPullError, match="data.dvc: missing"):
        pull_data(tmp_path, sources=("good",))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "data.dvc").write_text(yaml.safe_dump({"outs": [DVC_PIN]}))
    with pytest.raises(DataPullError, match="unknown data source 'ftp'"):
        pull_data(tmp_path, sources=("ftp",))
    assert not (tmp_path / "data").exists()
