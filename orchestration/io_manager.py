"""Each asset lives at a fixed path, artifacts/<asset name>/, written by the artefact's own `save`.

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


class ArtifactIOManager(ConfigurableIOManager):
    root: str = "artifacts"

    def _path(self, key) -> Path:
        return Path(self.root) / "/".join(key.path)

    def handle_output(self, context: OutputContext, obj) -> None:
        if obj is None:
            return
        if not hasattr(obj, "save"):
            raise TypeError(f"{type(obj).__name__} has no save(path): assets must return rrec_core artefacts")
        final = self._path(context.asset_key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            obj.save(tmp)
            old = final.with_name(f".{final.name}.old")
            if old.exists():
                shutil.rmtree(old)
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        context.add_output_metadata({"path": str(final)})

    def load_input(self, context: InputContext):
        path = self._path(context.asset_key)
        typ = context.dagster_type.typing_type
        if not path.exists():
            raise FileNotFoundError(f"{path}: asset {context.asset_key.to_user_string()} is not materialized yet")
        return typ.load(path)
