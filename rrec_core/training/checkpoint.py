"""Resumable training: the loop's whole state after each epoch, so a killed run continues where it stopped and
ends with the same model and metrics as a run that was never interrupted.

What is saved (safetensors for every tensor, JSON for the rest; nothing is pickled): the model (and tuned
LM layers), the best state so far, Adam's moments and step counts, the loop's random generator, torch's
global generator (dropout, attack starts) and NumPy's, the epoch, the early-stopping counters and the
history. A checkpoint carries a fingerprint of everything that decides the run (the loop's config, the
model's shape, the training pairs, the batch loss's config); one from another run is ignored, never
resumed. It is written to a temporary directory and swapped in whole, so a kill during the write leaves
the previous checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rrec_core.io import load_tensors, read_json, save_tensors, write_json

STATE = "state.json"
TOWER = "text_override."
TENSORS = "tensors.safetensors"


def fingerprint(**parts: Any) -> str:
    """A stable hash of the run-deciding parts (JSON-able values; arrays by their bytes)."""
    h = hashlib.sha256()
    for key in sorted(parts):
        value = parts[key]
        h.update(key.encode())
        if isinstance(value, np.ndarray):
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _flatten(prefix: str, state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in (state or {}).items()}


def _unflatten(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    out = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    return out or None


def save_checkpoint(folder: Path, fp: str, *, epoch: int, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    gen: torch.Generator, best_state: dict | None, best_score: float, since_best: int,
                    best_epoch: int, best_valid: dict, history: list[dict], lm: torch.nn.Module | None = None,
                    best_lm: dict | None = None) -> None:
    # a tuned LM tower is a child of the model while it trains (text_override): saved once, under "lm"
    tensors = {**_flatten("model", _without_tower(model.state_dict())), **_flatten("best", _without_tower(best_state))}
    if lm is not None:
        tensors.update(_flatten("lm", lm.state_dict()))
        tensors.update(_flatten("best_lm", best_lm))
    opt_state = opt.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for idx, slot in opt_state["state"].items():
        for key, value in slot.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    np_state = np.random.get_state()
    tensors["rng.loop"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    state = {"fingerprint": fp, "epoch": epoch, "best_score": best_score, "since_best": since_best,
             "best_epoch": best_epoch, "best_valid": best_valid, "history": history,
             "opt_param_groups": opt_state["param_groups"], "opt_scalars": scalars,
             "opt_slots": sorted(str(i) for i in opt_state["state"]), "numpy_rng": [np_state[0], *np_state[2:]],
             "has_lm": lm is not None}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_tensors(tmp / TENSORS, tensors)
        write_json(tmp / STATE, state)
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_checkpoint(folder: Path, fp: str) -> dict | None:
    """The saved loop state when `folder` holds a whole checkpoint of this very run (same fingerprint), else None.

    A kill between the two renames of save_checkpoint leaves only the previous checkpoint, under .<name>.old."""
    if not (folder / STATE).exists():
        old = folder.with_name(f".{folder.name}.old")
        if (old / STATE).exists() and (old / TENSORS).exists():
            folder = old
        else:
            return None
    state = read_json(folder / STATE)
    if state.get("fingerprint") != fp or not (folder / TENSORS).exists():
        return None
    state["tensors"] = load_tensors(folder / TENSORS)
    return state


def restore(state: dict, model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
            lm: torch.nn.Module | None = None) -> tuple[dict | None, dict | None]:
    """Load a checkpoint's state into the model, optimizer and generators; returns (best_state, best_lm)."""
    t = state["tensors"]
    missing, unexpected = model.load_state_dict(_unflatten("model", t) or {}, strict=False)
    if unexpected or any(not k.startswith(TOWER) for k in missing):
        raise ValueError(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
    if lm is not None and state["has_lm"]:
        lm.load_state_dict(_unflatten("lm", t) or {})
    slots: dict[int, dict[str, Any]] = {}
    for idx in state["opt_slots"]:
        slot: dict[str, Any] = {k[len(f"opt.{idx}."):]: v for k, v in t.items() if k.startswith(f"opt.{idx}.")}
        slot.update(state["opt_scalars"].get(idx, {}))
        slots[int(idx)] = slot
    opt.load_state_dict({"state": slots, "param_groups": state["opt_param_groups"]})
    gen.set_state(t["rng.loop"])
    torch.set_rng_state(t["rng.torch"])
    kind, *rest = state["numpy_rng"]
    np.random.set_state((kind, t["rng.numpy"].numpy().astype(np.uint32), *rest))
    best, best_lm = _unflatten("best", t), _unflatten("best_lm", t)
    if best is not None and missing:  # the tower's part of the best state is the best LM state
        best.update({k: (best_lm or {})[k[len(TOWER):]] for k in missing})
    return best, best_lm


def _without_tower(state: dict | None) -> dict | None:
    return None if state is None else {k: v for k, v in state.items() if not k.startswith(TOWER)}
