"""JSON schema of a task's arguments, derived from its type hints with pydantic."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, create_model
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

# The integers JSON carries through tidings: orjson encodes no wider one, so a task's
# progress or result holding a larger one could not be stored. Refused at submit instead.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


class TaskSignatureError(TypeError):
    """A task function whose signature cannot be described as JSON arguments."""


def args_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of `fn`'s parameters after the leading `job`."""
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    # The runtime passes `job` positionally: `fn(job, **kwargs)`.
    if not params or params[0].kind not in (
        params[0].POSITIONAL_ONLY,
        params[0].POSITIONAL_OR_KEYWORD,
    ):
        raise TaskSignatureError(f"{fn.__name__}: a task takes `job` as its first parameter")
    try:
        hints = get_type_hints(fn)
    except NameError as exc:
        raise TaskSignatureError(f"{fn.__name__}: cannot resolve a type hint: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in params[1:]:
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise TaskSignatureError(
                f"{fn.__name__}: parameter {param.name!r} must be a plain named parameter"
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    model: type[BaseModel] = create_model(
        f"{fn.__name__}_args",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return model


class BoundedIntegers(GenerateJsonSchema):
    """pydantic's JSON schema, with every integer bounded to what tidings can carry."""

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        json_schema = super().int_schema(schema)
        json_schema.setdefault("minimum", INT_MIN)
        json_schema.setdefault("maximum", INT_MAX)
        return json_schema


def args_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema the server validates submissions against."""
    schema = model.model_json_schema(schema_generator=BoundedIntegers)
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    schema["type"] = "object"
    return schema
