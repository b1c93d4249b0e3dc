"""The run's configuration as one Dagster resource, generated from rrec_core's pydantic schema.

Every asset reads its sections from `RrecConfig.resolve()`: params.yaml, read when the run starts,
with the launchpad's overrides laid over it. So an override of `adversarial.eps` reaches every stage
that uses the adversarial section (adversarial_recommender and poisoning_evaluation alike), and an
edit of params.yaml is seen by the next run without reloading the code location.

In the launchpad every field starts empty (= "the value in params.yaml") and carries the schema's
description; `rrec config` prints the resolved values.
"""
import os
import types
import typing
from typing import Any, Literal, Optional, get_args, get_origin

from dagster import Config, ConfigurableResource, InitResourceContext
from pydantic import BaseModel, Field, PrivateAttr

from rrec_core.config import PipelineConfig, load_params, resolve_config


def _leaf_type(ann: Any) -> Any:
    """An annotation Dagster's config system accepts (it has no tuples or Literals)."""
    origin = get_origin(ann)
    if origin is Literal:
        return type(get_args(ann)[0])  # rrec_core's model re-validates the value when the run starts
    if origin is tuple:
        return list[_leaf_type(next(a for a in get_args(ann) if a is not Ellipsis))]  # type: ignore[misc]
    if origin is list:
        return list[_leaf_type(get_args(ann)[0])]  # type: ignore[misc]
    if origin in (typing.Union, types.UnionType):
        return _leaf_type(next(a for a in get_args(ann) if a is not type(None)))
    if origin is dict:
        k, v = get_args(ann)
        return dict[k, _leaf_type(v)]  # type: ignore[misc,valid-type]
    return ann


def _override_class(model: type[BaseModel], name: str) -> type[Config]:
    """A Dagster Config mirroring `model`: sections nest, every leaf is Optional with default None."""
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    for field, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            sub = _override_class(ann, name.removesuffix("Overrides") + field.title().replace("_", "") + "Overrides")
            annotations[field] = sub
            namespace[field] = Field(default_factory=sub, description=info.description)
        else:
            annotations[field] = Optional[_leaf_type(ann)]
            namespace[field] = Field(default=None, description=f"{info.description or ''} (empty: params.yaml)")
    namespace["__annotations__"] = annotations
    namespace["__doc__"] = model.__doc__
    namespace["__module__"] = __name__
    return type(name, (Config,), namespace)


_Sections = {field: _override_class(info.annotation, f"{field.capitalize()}Overrides")  # type: ignore[arg-type]
             for field, info in PipelineConfig.model_fields.items()}


def _resource_class() -> type[ConfigurableResource]:
    annotations: dict[str, Any] = {"params_path": Optional[str]}
    namespace: dict[str, Any] = {
        "params_path": Field(default=None, description="params file; empty: $RREC_PARAMS, else params.yaml")}
    for field, cls in _Sections.items():
        annotations[field] = cls
        namespace[field] = Field(default_factory=cls, description=PipelineConfig.model_fields[field].description)
    namespace["__annotations__"] = annotations
    namespace["__module__"] = __name__
    return type("_RrecConfigFields", (ConfigurableResource,), namespace)


class RrecConfig(_resource_class()):  # type: ignore[misc]
    """The run's resolved configuration (params.yaml + launchpad overrides); see the module docstring."""

    _resolved: Optional[PipelineConfig] = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._resolved = self._resolve()

    def resolve(self) -> PipelineConfig:
        """The whole configuration; read once per run (at its start), the same object for every stage."""
        if self._resolved is None:
            self._resolved = self._resolve()
        return self._resolved

    def _resolve(self) -> PipelineConfig:
        overrides = {k: v for k, v in self.model_dump().items() if k != "params_path"}
        return resolve_config(load_params(self.params_file()), overrides)

    def params_file(self) -> str:
        return self.params_path or os.environ.get("RREC_PARAMS", "params.yaml")


def schedule_config():
    """params.yaml's schedule section, for the schedule definition (read when definitions load)."""
    return load_params(os.environ.get("RREC_PARAMS", "params.yaml")).schedule
