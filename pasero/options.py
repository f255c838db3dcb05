"""Options declared once, as dataclass fields (fairseq's dataclass configs are the model).

A field made with `option()` carries its default, help, bounds and choices; everything else is
derived from it: the command-line flags (`add_arguments`), reading YAML and command-line values
into the field's type (`coerce`), the checks of choices and bounds (`check_values`), and the
workflow's JSON schema for the same keys (`json_schema`, compared to the schema by a test). So
adding an option is one line in one dataclass. No torch here: `--help` and the workflow's
start-up read these declarations.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from pasero.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Spec:
    """What a field declares beyond its type and default."""

    help: str
    min: float | None = None  # value >= min
    max: float | None = None  # value <= max
    gt: float | None = None  # value > gt
    lt: float | None = None  # value < lt
    length: int | None = None  # a list's number of items
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None
    parse: Callable[[Any, str], Any] | None = None  # a notation of its own (durations)
    schema_type: tuple[str, ...] | None = None  # JSON types of the notation, when `parse` is set
    metavar: str | None = None
    short: tuple[str, ...] = ()  # e.g. ("-s",)
    resumable: bool = False  # changing it continues a run instead of starting over (training)
    inference: bool = False  # stored with the model as a decoding default
    workflow: bool = True  # offered in the workflow's config (False: the workflow sets it itself)

    def choice_list(self) -> tuple[str, ...] | None:
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field with its declaration (see Spec for the keywords)."""
    meta = {"spec": Spec(help, **spec)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def same_as(cls: type, name: str, help: str | None = None, **changes: Any) -> Any:
    """The declaration of `cls.name` reused by another dataclass (training stores the decoding
    defaults that pasero-decode declares), with another help text or flag if given."""
    source = next(f for f in dataclasses.fields(cls) if f.name == name)
    spec = dataclasses.replace(source.metadata["spec"], **({"help": help} if help else {}), **changes)
    return field(default=source.default, metadata={"spec": spec})


def spec(f: dataclasses.Field) -> Spec:
    return f.metadata["spec"]


def declared(cls: type) -> list[dataclasses.Field]:
    """The fields of `cls` made with `option()` (internal state fields have no Spec)."""
    return [f for f in dataclasses.fields(cls) if "spec" in f.metadata]


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


# Types ------------------------------------------------------------------------------------------

def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(base type, nullable) of `T` or `T | None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(key: str, value: Any, hint: Any, parse: Callable[[Any, str], Any] | None = None) -> Any:
    """A YAML or command-line value checked against a field's type (an int is a valid float; YAML
    1.1 leaves `5e-4` a string, which is read as the number it means)."""
    if parse is not None:
        return parse(value, key)
    base, nullable = _unwrap(hint)
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"option '{key}' cannot be null")
    if typing.get_origin(base) is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"option '{key}' expects a list, e.g. [0.9, 0.98]; got {value!r}")
        (item,) = typing.get_args(base)
        return [coerce(key, v, item) for v in value]
    if isinstance(value, str) and base in (int, float):
        try:
            value = base(value)
        except ValueError:
            pass
    if base is bool and isinstance(value, bool):
        return value
    if base is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"option '{key}' expects {getattr(base, '__name__', base)}; got {value!r}")


# Checks -----------------------------------------------------------------------------------------

def check_value(name: str, value: Any, s: Spec) -> None:
    """Choices and bounds of one value (None, where allowed, means "off" and is not checked)."""
    if value is None:
        return
    if isinstance(value, list):
        if s.length is not None and len(value) != s.length:
            raise ConfigError(f"option '{name}' needs {s.length} values; got {value}")
        for item in value:
            check_value(name, item, dataclasses.replace(s, length=None))
        return
    choices = s.choice_list()
    if choices is not None and value not in choices:
        raise ConfigError(f"option '{name}' must be one of {', '.join(choices)}; got '{value}'")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (s.min is not None and value < s.min) or (s.gt is not None and value <= s.gt) or \
                (s.max is not None and value > s.max) or (s.lt is not None and value >= s.lt) or math.isnan(value):
            raise ConfigError(f"option '{name}' must {describe_bounds(s)}; got {value}")


def describe_bounds(s: Spec) -> str:
    """'be positive', 'not be negative', 'be in [0, 1)': what a value must do, for messages."""
    if s.gt == 0 and s.max is None and s.lt is None:
        return "be positive"
    if s.min == 0 and s.max is None and s.lt is None:
        return "not be negative"
    lo, hi = (s.min if s.min is not None else s.gt), (s.max if s.max is not None else s.lt)
    if lo is not None and hi is not None:
        low, high = "[" if s.min is not None else "(", "]" if s.max is not None else ")"
        return f"be in {low}{_num(lo)}, {_num(hi)}{high}"
    if lo is not None:
        return f"be at least {_num(lo)}" if s.min is not None else f"be greater than {_num(lo)}"
    return f"be at most {_num(hi)}" if s.max is not None else f"be less than {_num(hi)}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def check_values(obj: Any) -> None:
    """Check every declared field of a dataclass instance."""
    for f in declared(type(obj)):
        check_value(f.name, getattr(obj, f.name), spec(f))


def unknown_option(key: str, known: Iterable[str], where: str) -> ConfigError:
    hint = did_you_mean(key, known) or "see --help"
    return ConfigError(f"{where}: unknown option '{key}'; {hint}")


# The workflow's JSON schema ---------------------------------------------------------------------

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def json_schema(cls: type, only_workflow: bool = True) -> dict[str, dict[str, Any]]:
    """`properties` of a JSON schema for the declared fields of `cls` (no defaults: an unset key
    keeps the command's own default)."""
    types_, out = hints(cls), {}
    for f in declared(cls):
        s = spec(f)
        if only_workflow and not s.workflow:
            continue
        out[f.name] = _field_schema(types_[f.name], s)
    return out


def _field_schema(hint: Any, s: Spec) -> dict[str, Any]:
    base, nullable = _unwrap(hint)
    prop: dict[str, Any] = {}
    choices = s.choice_list()
    if choices is not None:
        prop["enum"] = list(choices) + ([None] if nullable else [])
    elif s.schema_type is not None:
        prop["type"] = list(s.schema_type)
    elif typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        prop["type"] = ["array", "null"] if nullable else "array"
        prop["items"] = {"type": _JSON_TYPES[item], **_bounds(s)}
        if s.length is not None:
            prop["minItems"] = prop["maxItems"] = s.length
    else:
        prop["type"] = [_JSON_TYPES[base], "null"] if nullable else _JSON_TYPES[base]
    if "items" not in prop:
        prop.update(_bounds(s))
    prop["description"] = s.help
    return prop


def _bounds(s: Spec) -> dict[str, float]:
    keys = (("min", "minimum"), ("max", "maximum"), ("gt", "exclusiveMinimum"), ("lt", "exclusiveMaximum"))
    return {schema_key: getattr(s, key) for key, schema_key in keys if getattr(s, key) is not None}


# Command line -----------------------------------------------------------------------------------

def flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def add_arguments(group: argparse._ActionsContainer, cls: type, defaults: dict[str, Any] | None = None,
                  only: Iterable[str] | None = None) -> None:
    """One `--name-with-dashes` flag per declared field (and its short flags), its value read as a
    YAML scalar (`--lr 5e-4`, `--max-epochs null`, `--valid-decode false`, a bare `--sampling`).

    Absent flags leave no attribute (argparse.SUPPRESS), so a YAML file's value stays; `defaults`
    overrides the shown defaults (e.g. the default architecture's model dimensions).
    """
    types_, wanted = hints(cls), set(only) if only is not None else None
    for f in declared(cls):
        if wanted is not None and f.name not in wanted:
            continue
        s, base = spec(f), _unwrap(types_[f.name])[0]
        default = (defaults or {}).get(f.name, default_of(f))
        shown = f" (default: {_show(default)})" if default is not None else ""
        choices = s.choice_list()
        metavar = s.metavar or ("{" + ",".join(choices) + "}" if choices else _metavar(base))
        extra = dict(nargs="?", const="true") if base is bool else {}
        group.add_argument(*s.short, flag(f.name), dest=f"cfg.{f.name}", metavar=metavar,
                           default=argparse.SUPPRESS, help=f"{s.help}{shown}".replace("%", "%%"), **extra)


def _metavar(base: Any) -> str:
    if typing.get_origin(base) is list:
        return "[X, ...]"
    return {int: "N", float: "X", bool: "BOOL"}.get(base, "VALUE")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def cli_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (added by `add_arguments`), parsed as YAML scalars."""
    out = {}
    for dest, text in vars(namespace).items():
        if dest.startswith("cfg."):
            try:
                out[dest[4:]] = yaml.safe_load(text) if text != "" else ""
            except yaml.YAMLError:
                out[dest[4:]] = text
    return out


def build(cls: type, values: dict[str, Any], where: str) -> Any:
    """An instance of `cls` from raw values (YAML or command line): names checked, types coerced,
    choices and bounds checked."""
    fields = {f.name: f for f in declared(cls)}
    types_ = hints(cls)
    kwargs = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise unknown_option(str(key), fields, where)
        kwargs[name] = coerce(name, value, types_[name], spec(fields[name]).parse)
    obj = cls(**kwargs)
    check_values(obj)
    return obj


def updated(obj: Any, where: str, **changes: Any) -> Any:
    """A copy of a declared dataclass with `changes` (None values keep the current one): names,
    types and values checked like any other input."""
    values = {k: v for k, v in changes.items() if v is not None}
    fields = {f.name: f for f in declared(type(obj))}
    for key in values:
        if key not in fields:
            raise unknown_option(key, fields, where)
    return build(type(obj), {**{name: getattr(obj, name) for name in fields}, **values}, where)
