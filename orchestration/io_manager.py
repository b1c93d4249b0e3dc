"""Each asset lives at a fixed path, artifacts/<asset name>/, written by the artefact's own `save`;
the git-tracked files it publishes (rrec_core.outputs.PUBLISHED) are written here too.

Fixed paths let `dvc.yaml` name every stage's outs, and `dvc repro` (which materializes one asset per
stage, in separate processes) hands data between stages through the same files. A directory is
written to a temporary sibling and swapped in whole, so readers never see a half-written asset.
No pickles: each artefact type saves itself as Parquet / safetensors / JSON.
"""
import os
import shutil
import tempfile
from pathlib import Path

from dagster import ConfigurableIOManager, InputContext, OutputContext

from rrec_core.io import atomic_path
from rrec_core.outputs import ARTIFACTS_DIR, published_by


def _swap_dir(final: Path, fill) -> None:
    """Build a directory with fill(tmp) beside `final`, then replace `final` with it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        fill(tmp)
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recover_dir(final: Path) -> bool:
    """Put back the previous directory a write killed between _swap_dir's two renames left aside; True if done."""
    old = final.with_name(f".{final.name}.old")
    if final.exists() or not old.is_dir():
        return False
    os.replace(old, final)
    return True


class ArtifactIOManager(ConfigurableIOManager):
    root: str = ARTIFACTS_DIR
    """Where artefacts live (dvc.yaml names artifacts/<asset>, so DVC runs keep the default)."""
    project_root: str = "."
    """Where the published metrics, plots and report go (paths in rrec_core.outputs)."""

    def _path(self, key) -> Path:
        return Path(self.root) / "/".join(key.path)

    def handle_output(self, context: OutputContext, obj) -> None:
        if obj is None:
            return
        if not hasattr(obj, "save"):
            raise TypeError(f"{type(obj).__name__} has no save(path): assets must return rrec_core artefacts")
        asset = context.asset_key.to_user_string()
        decls = published_by(asset)
        content = obj.published() if decls else {}
        if set(content) != {d.role for d in decls}:
            raise ValueError(f"asset {asset} publishes {sorted(content)}, rrec_core.outputs declares "
                             f"{sorted(d.role for d in decls)}")
        final = self._path(context.asset_key)
        _swap_dir(final, obj.save)
        written = {}
        for d in decls:
            target = Path(self.project_root) / d.path
            if d.directory:
                files = content[d.role]
                _swap_dir(target, lambda tmp, files=files: [(tmp / n).write_bytes(b) for n, b in files.items()])
            else:
                with atomic_path(target) as tmp:
                    tmp.write_bytes(content[d.role])
            written[d.role] = d.path
        context.add_output_metadata({"path": str(final), **{f"published/{r}": p for r, p in written.items()}})

    def load_input(self, context: InputContext):
        path = self._path(context.asset_key)
        typ = context.dagster_type.typing_type
        if not path.exists() and not recover_dir(path):
            raise FileNotFoundError(f"{path}: asset {context.asset_key.to_user_string()} is not materialized yet")
        return typ.load(path)
