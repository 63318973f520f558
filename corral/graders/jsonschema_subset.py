"""JSON-schema validation: the `jsonschema` package when installed, else a small subset.

The subset supports type, enum, const, properties, required, additionalProperties, items,
min/maxItems, min/maxLength, pattern, minimum/maximum (and exclusive), anyOf, allOf.
"""
from __future__ import annotations

import re

from corral.core.errors import CorralError

_KEYWORDS = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "anyOf", "allOf"})
# Annotations never affect validity, so they are accepted and ignored.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default",
                          "examples"})
_PY_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_type(value, name: str) -> bool:
    if name == "number":
        return _is_number(value)
    if name == "integer":  # as in the JSON-schema spec, 2.0 is an integer
        return _is_number(value) and float(value).is_integer()
    if name not in _PY_TYPES:
        raise CorralError(f"JSON schema: unknown type {name!r}; use one of "
                          f"{sorted([*_PY_TYPES, 'number', 'integer'])}.")
    return isinstance(value, _PY_TYPES[name])


def _type_name(value) -> str:
    if _is_number(value):
        return "integer" if float(value).is_integer() else "number"
    return next((n for n, t in _PY_TYPES.items() if isinstance(value, t)), type(value).__name__)


def _same(a, b) -> bool:
    """JSON equality: True is not 1."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _bounds(value, schema: dict, path: str) -> list[str]:
    errors = []
    if _is_number(value):
        checks = [("minimum", lambda b: value >= b), ("maximum", lambda b: value <= b),
                  ("exclusiveMinimum", lambda b: value > b),
                  ("exclusiveMaximum", lambda b: value < b)]
        errors += [f"{path}: {value} violates {k} {schema[k]}" for k, ok in checks
                   if k in schema and not ok(schema[k])]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than minLength {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than maxLength {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: does not match pattern {schema['pattern']!r}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than minItems {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than maxItems {schema['maxItems']}")
    return errors


def _children(value, schema: dict, path: str) -> list[str]:
    errors = []
    if isinstance(value, list) and isinstance(schema.get("items"), (dict, bool)):
        for i, element in enumerate(value):
            errors += subset_schema_errors(element, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{path}: missing required property {k!r}"
                   for k in schema.get("required", []) if k not in value]
        extra_schema = schema.get("additionalProperties", True)
        for key, element in value.items():
            sub = properties.get(key, extra_schema)
            if sub is False and key not in properties:
                errors.append(f"{path}: additional property {key!r} is not allowed")
            else:
                errors += subset_schema_errors(element, sub, f"{path}.{key}")
    return errors


def _check_keywords(schema: dict) -> None:
    unknown = sorted(set(schema) - _KEYWORDS - _ANNOTATIONS)
    if unknown:
        raise CorralError(f"JSON schema keyword {unknown[0]!r} is not supported by corral's "
                          f"built-in validator; pip install jsonschema for the full standard.")


def check_schema_subset(schema) -> None:
    """Raise CorralError if `schema` (at any depth) uses what this validator cannot check."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise CorralError(f"JSON schema: a schema is an object or a boolean, got {schema!r}.")
    _check_keywords(schema)
    types = schema.get("type", [])
    for name in [types] if isinstance(types, str) else types:
        _is_type(None, name)  # raises on an unknown type name
    subs = [*schema.get("properties", {}).values(), *schema.get("anyOf", []),
            *schema.get("allOf", []), schema.get("items", True),
            schema.get("additionalProperties", True)]
    for sub in subs:
        check_schema_subset(sub)


def subset_schema_errors(value, schema, path: str = "$") -> list[str]:
    """Errors of `value` against `schema`, each naming a JSON path; [] when valid."""
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: no value is allowed here"]
    _check_keywords(schema)
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {_type_name(value)}"]
    errors = []
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    errors += _bounds(value, schema, path) + _children(value, schema, path)
    for sub in schema.get("allOf", []):
        errors += subset_schema_errors(value, sub, path)
    if "anyOf" in schema and all(subset_schema_errors(value, s, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches none of the anyOf schemas")
    return errors


def check_schema(schema) -> None:
    """Raise CorralError when `schema` is malformed or (without jsonschema) unsupported."""
    try:
        import jsonschema
    except ImportError:
        return check_schema_subset(schema)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise CorralError(f"json_schema grader: invalid schema ({exc.message}).") from None


def schema_errors(value, schema) -> list[str]:
    """Validation errors of `value` against `schema` (empty when valid)."""
    try:
        import jsonschema
    except ImportError:
        return subset_schema_errors(value, schema)
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"$/{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(value)]
