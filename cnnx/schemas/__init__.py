"""The JSON vocabulary of the `cnnx` CLI: one JSON Schema per subcommand's `--json` object (`<command>.json`
beside this file, plus `error.json` for the object every subcommand prints on an error).

The conventions, stated once (docs/cli.md repeats them for readers):
  * a systolic array is the string "RxC" ("8x8"), rows first;
  * cycles are integers (the cores count whole cycles, and every image takes the same number);
  * layer names are the float layers an int8 layer stands for, joined by "+": "Conv2d+ReLU", "MaxPool2d";
  * a speed-up is named for what it divides: `rtl_speedup_over_cpu` = CPU time / RTL time (> 1: RTL faster);
  * an accuracy comes with the number of images it is over (`accuracy_images`);
  * CPU timings are medians, with `<key>_spread` = (max - min) / median over the repeats;
  * times carry their unit in the key (`_us`, `_s`, `_seconds`, `_mhz`); a figure that cannot be computed is
    null, never NaN.

`validate(obj, schema)` is a small checker of the subset of JSON Schema these files use (type, properties,
required, additionalProperties, items, enum, pattern, minimum, anyOf, $ref to "#/$defs/..."), so the tests
need no extra package; it returns the list of problems, each naming the JSON path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
COMMANDS = ("train", "eval", "cosim", "profile", "synth", "import", "export", "error")

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def load(command: str) -> dict:
    """The schema of `cnnx COMMAND --json` ("error": the error object)."""
    if command not in COMMANDS:
        raise ValueError(f"no schema for {command!r}; known: {', '.join(COMMANDS)}")
    return json.loads((SCHEMA_DIR / f"{command}.json").read_text())


def validate(obj, schema: dict, _root: dict | None = None, _path: str = "$") -> list[str]:
    """Problems of `obj` against `schema` (empty: it conforms)."""
    root = schema if _root is None else _root
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"only local #/$defs/ references are supported, got {ref!r}")
        return validate(obj, root["$defs"][ref[len("#/$defs/"):]], root, _path)
    problems: list[str] = []
    if "anyOf" in schema:
        if all(validate(obj, s, root, _path) for s in schema["anyOf"]):
            problems.append(f"{_path}: matches none of the allowed forms")
        return problems
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](obj) for t in types):
            return [f"{_path}: expected {' or '.join(types)}, got {type(obj).__name__} {obj!r:.60}"]
    if "enum" in schema and obj not in schema["enum"]:
        problems.append(f"{_path}: {obj!r} is not one of {schema['enum']}")
    if isinstance(obj, str) and "pattern" in schema and not re.search(schema["pattern"], obj):
        problems.append(f"{_path}: {obj!r} does not match {schema['pattern']}")
    if _TYPES["number"](obj) and "minimum" in schema and obj < schema["minimum"]:
        problems.append(f"{_path}: {obj} is below the minimum {schema['minimum']}")
    if isinstance(obj, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in obj:
                problems.append(f"{_path}: missing key {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, value in obj.items():
            if key in props:
                problems += validate(value, props[key], root, f"{_path}.{key}")
            elif extra is False:
                problems.append(f"{_path}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                problems += validate(value, extra, root, f"{_path}.{key}")
    if isinstance(obj, list) and "items" in schema:
        for i, value in enumerate(obj):
            problems += validate(value, schema["items"], root, f"{_path}[{i}]")
    return problems
