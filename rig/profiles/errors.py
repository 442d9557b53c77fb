"""One readable error per bad data file: each pydantic error becomes `file: key.path: message`."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError


class ProfileError(ValueError):
    """A profile or CAPK file that cannot be used; the message names file, key path and fix."""


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    return ".".join(parts) or "(top level)"


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class that owns the last key of `loc` (to list the keys valid there)."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if model is None:
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            continue
        model = _model_in(field.annotation)
    return model


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def format_errors(path: str, exc: ValidationError, root: type[BaseModel]) -> str:
    """Render a ValidationError as lines `path: key.path: what is wrong and how to fix it`."""
    lines = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            owner = _model_at(root, err["loc"])
            hint = f"; valid keys here: {', '.join(owner.model_fields)}" if owner else ""
            msg = f"unknown key{hint}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{path}: {_location(err['loc'])}: {msg}")
    return "\n".join(lines)
