"""A DVC remote round trip (issue 10): data and a stage's outputs pushed to a directory remote, the
workspace and cache wiped, and everything pulled back bit for bit, also by `rrec data pull`."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from test_dvc_repro import _dvc, _run

from rrec_core.data.fetch import DataPullError, dir_md5, pull_data
from rrec_core.data.synthetic import SyntheticSpec, synthesize

pytestmark = pytest.mark.skipif(_dvc() is None, reason="DVC tool environment not found (make setup creates .venv-dvc)")


def _project(tmp_path: Path) -> tuple[str, Path]:
    dvc = _dvc()
    assert dvc is not None
    repo = tmp_path / "repo"
    repo.mkdir()
    _run(["git", "init", "-q"], repo)
    _run([dvc, "init", "-q"], repo)
    synthesize(SyntheticSpec(5_000, seed=1, name="syn"), repo / "data" / "syn")
    _run([dvc, "add", "-q", "data"], repo)
    # a stage whose output is an artefact: outputs travel through the remote like data does
    (repo / "count.py").write_text("import pathlib, sys\n"
                                   "n = sum(1 for _ in open('data/syn/syn.inter')) - 1\n"
                                   "pathlib.Path('out').mkdir(exist_ok=True)\n"
                                   "pathlib.Path('out/count.txt').write_text(f'{n}\\n')\n")
    _run([dvc, "stage", "add", "-q", "-n", "count", "-d", "count.py", "-d", "data", "-o", "out",
          sys.executable, "count.py"], repo)
    _run([dvc, "repro", "-q"], repo)
    return dvc, repo


def _wipe(repo: Path) -> None:
    for p in ("data", "out", ".dvc/cache"):
        shutil.rmtree(repo / p, ignore_errors=True)


def test_push_pull_round_trip_and_rrec_data_pull(tmp_path, monkeypatch):
    """dvc push / pull through a directory remote restores data and a stage's outputs bit for bit; `rrec
    data pull` uses the remote (also one kept in config.local, where credentials go), refuses clearly
    without one, and reports a failing pull."""
    dvc, repo = _project(tmp_path)
    monkeypatch.setenv("RREC_DVC", dvc)  # the scratch project has no .venv-dvc of its own
    before = {p: dir_md5(repo / p)[0] for p in ("data", "out")}

    backup = tmp_path / "backup"
    backup.mkdir()
    shutil.move(repo / "data", backup / "data")
    shutil.move(repo / ".dvc" / "cache", backup / "cache")
    with pytest.raises(DataPullError, match="no DVC remote configured"):
        pull_data(repo, ("dvc",))
    (tmp_path / "empty").mkdir()
    _run([dvc, "remote", "add", "-q", "--local", "-d", "empty", str(tmp_path / "empty")], repo)
    with pytest.raises(DataPullError, match="dvc pull failed"):
        pull_data(repo, ("dvc",))
    shutil.move(backup / "data", repo / "data")
    shutil.move(backup / "cache", repo / ".dvc" / "cache")

    remote = tmp_path / "remote"
    _run([dvc, "remote", "add", "-q", "--local", "-d", "storage", str(remote)], repo)
    _run([dvc, "push", "-q"], repo)
    assert any(remote.rglob("*")), "nothing was pushed"
    _wipe(repo)
    got = pull_data(repo, ("dvc",))
    assert got["source"] == "dvc" and dir_md5(repo / "data")[0] == before["data"]
    _wipe(repo)
    _run([dvc, "pull", "-q"], repo)
    assert {p: dir_md5(repo / p)[0] for p in ("data", "out")} == before
    assert (repo / "out" / "count.txt").read_text() == "5000\n"
    # the pulled outputs are those of the current code and data: nothing to re-run
    assert json.loads(_run([dvc, "status", "--json"], repo).stdout) == {}
