"""Dagster launchpad config generated from rrec_core's pydantic models.

rrec_core.config is the single source of truth: each Dagster `Config` class here is built from one
of its models, field by field, with defaults read from params.yaml — so the launchpad shows exactly
the knobs `dvc repro` uses, pre-filled with the same values, and nothing is declared twice.
"""
import os
import typing
from pathlib import Path
from typing import Any, Literal, Optional, get_args, get_origin

from dagster import Config
from pydantic import BaseModel, Field

from rrec_core.config import PipelineConfig, load_params

PARAMS_PATH = Path(os.environ.get("RREC_PARAMS", "params.yaml"))


def project_params() -> PipelineConfig:
    return load_params(PARAMS_PATH)


def _dagster_type(ann: Any) -> Any:
    """Map an annotation to one Dagster config accepts (it has no tuples or Literals)."""
    origin = get_origin(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return _config_class(ann, ann())
    if origin is Literal:
        return str  # rrec_core's model re-validates the value when the run starts
    if origin is tuple:
        args = [a for a in get_args(ann) if a is not Ellipsis]
        return list[_dagster_type(args[0])]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in get_args(ann) if a is not type(None)]
        return Optional[_dagster_type(args[0])]
    if origin is dict:
        k, v = get_args(ann)
        return dict[k, _dagster_type(v)]
    return ann


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return list(value)
    return value


def _config_class(model: type[BaseModel], defaults: BaseModel, name: str | None = None) -> type[Config]:
    annotations, namespace = {}, {}
    for field, info in model.model_fields.items():
        typ = _dagster_type(info.annotation)
        annotations[field] = typ
        value = getattr(defaults, field)
        if isinstance(value, BaseModel):
            namespace[field] = Field(default_factory=lambda t=typ, v=value: t(**v.model_dump(mode="json")),
                                     description=info.description)
        elif isinstance(value, (list, tuple, dict)):
            namespace[field] = Field(default_factory=lambda v=_default(value): type(v)(v), description=info.description)
        else:
            namespace[field] = Field(default=value, description=info.description)
    namespace["__annotations__"] = annotations
    namespace["__doc__"] = model.__doc__
    namespace["__module__"] = __name__
    return type(name or f"{model.__name__}Launch", (Config,), namespace)


def to_core(config: Config, model: type[BaseModel]):
    """Launchpad config -> the rrec_core model (full validation, Literals included)."""
    return model.model_validate(config.model_dump())


_p = project_params()
DataLaunch = _config_class(type(_p.data), _p.data, "DataLaunch")


_ValidationLaunch = _config_class(type(_p.validation), _p.validation, "ValidationLaunch")
_SplitLaunch = _config_class(type(_p.split), _p.split, "SplitLaunch")


class ValidateLaunch(Config):
    """validated_interactions runs the expectation suite and the split: both sections, one launchpad form."""

    validation: _ValidationLaunch = Field(default_factory=_ValidationLaunch)  # type: ignore[valid-type]
    split: _SplitLaunch = Field(default_factory=_SplitLaunch)  # type: ignore[valid-type]


EncoderLaunch = _config_class(type(_p.encoder), _p.encoder, "EncoderLaunch")
PretrainLaunch = _config_class(type(_p.pretrain), _p.pretrain, "PretrainLaunch")
EvalLaunch = _config_class(type(_p.evaluation), _p.evaluation, "EvalLaunch")
AdversarialLaunch = _config_class(type(_p.adversarial), _p.adversarial, "AdversarialLaunch")
RobustnessLaunch = _config_class(type(_p.robustness), _p.robustness, "RobustnessLaunch")
GanLaunch = _config_class(type(_p.gan), _p.gan, "GanLaunch")
PoisoningLaunch = _config_class(type(_p.poisoning), _p.poisoning, "PoisoningLaunch")
