"""Typed configs: dataclasses whose fields carry help text, loaded from YAML, overridden by key=value.

Every config is a (possibly nested) dataclass. `load_config(Cls, path, ["a.b=1"])` reads the YAML,
applies dotted overrides, and checks every key: an unknown key is an error naming the closest valid ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dareu.errors import DareUError

C = TypeVar("C")


def _configs_dir() -> Path:
    """The shipped YAML configs: `configs/` beside the packages in a checkout (or an editable install), the copy
    installed as package data (`dareu/configs/`, see setup.py) otherwise."""
    checkout = Path(__file__).resolve().parents[1] / "configs"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "configs"


CONFIGS_DIR = _configs_dir()


def field(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with help text (shown by `dareu config` and in --help epilogs)."""
    kw: dict[str, Any] = {"metadata": {"help": help}}
    if default_factory is not dataclasses.MISSING:
        kw["default_factory"] = default_factory
    else:
        kw["default"] = default
    return dataclasses.field(**kw)


class BadValue(DareUError):
    """A config value out of its range or choices; `from_dict` prefixes the key with its section."""

    def __init__(self, key: str, value: Any, rule: str):
        self.key, self.value, self.rule = key, value, rule
        super().__init__(f"config key {key!r} {rule}, got {value!r}")


def require(cfg: Any, key: str, ok: bool, rule: str) -> None:
    """Raise BadValue for `cfg.key` unless `ok`; called from a config dataclass's __post_init__."""
    if not ok:
        raise BadValue(key, getattr(cfg, key), rule)


def require_choice(cfg: Any, key: str, choices: Any) -> None:
    value = getattr(cfg, key)
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise BadValue(key, value, f"must be one of {', '.join(sorted(str(c) for c in choices))}{hint}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def valid_keys(cls: type, prefix: str = "") -> list[str]:
    """All dotted keys of a config class, nested ones included."""
    keys = []
    for name, tp in _field_types(cls).items():
        key = f"{prefix}{name}"
        keys.append(key)
        if dataclasses.is_dataclass(tp):
            keys.extend(valid_keys(tp, key + "."))
    return keys


def _unknown(key: str, cls: type, root: type) -> DareUError:
    close = difflib.get_close_matches(key, valid_keys(root), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(valid_keys(root))}"
    return DareUError(f"unknown config key {key!r} for {cls.__name__}{hint}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Turn a YAML/CLI value into the field's declared type (int, float, bool, str, list, Optional)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("null", "none"))):
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], key)
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise DareUError(f"config key {key!r} expects a mapping like {{beta: 0.1}}, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") if args else v for k, v in value.items()}
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise DareUError(f"config key {key!r} expects a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise DareUError(f"config key {key!r} expects true/false, got {value!r}")
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise DareUError(f"config key {key!r} expects {tp.__name__}, got {value!r}") from None
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise DareUError(f"config key {key!r} must be one of {list(args)}, got {value!r}")
        return value
    return value


def from_dict(cls: type[C], data: dict[str, Any] | None, root: type | None = None, prefix: str = "") -> C:
    """Build a config dataclass from a nested dict, rejecting unknown keys."""
    root = root or cls
    data = dict(data or {})
    types = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in types:
            while isinstance(value, dict) and value:  # trian.learning_rate: match the whole dotted key
                key, value = next(iter(value.items()))
                full = f"{full}.{key}"
            raise _unknown(full, cls, root)
        tp = types[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise DareUError(f"config key {full!r} is a section; give its keys, e.g. {full}.<key>=...")
            kwargs[key] = from_dict(tp, value, root, full + ".")
        else:
            kwargs[key] = _coerce(value, tp, full)
    try:
        return cls(**kwargs)
    except BadValue as err:  # name the key as the user writes it, section included
        raise BadValue(prefix + err.key, err.value, err.rule) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


class Whole(dict):
    """A mapping given whole on the command line (`aux.forget_params={beta: 0.1}`): it replaces the
    mapping beneath it instead of merging into it, since it names the parameters of the objective it is for."""


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """["a.b=1", "c=x"] -> {"a": {"b": 1}, "c": "x"} (values parsed as YAML scalars; `k={...}` is Whole)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise DareUError(f"override {pair!r} is not key=value (e.g. world.seed=3)")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, dict):
            value = Whole(value)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise DareUError(f"override {pair!r} sets inside a non-section key")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, section by section; an empty mapping, or one given whole on the command line
    (`Whole`), replaces (`aux.forget_params={}` clears the parameters of the objective it replaces)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and value and not isinstance(value, Whole) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file() and path.parts[:1] == ("configs",):  # a shipped config, wherever DareU is installed
        path = CONFIGS_DIR.joinpath(*path.parts[1:])
    if not path.is_file():
        raise DareUError(f"config file {path} does not exist; see configs/ for examples")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise DareUError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DareUError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> C:
    """Defaults <- `base` <- YAML file <- key=value overrides; every key checked against `cls`."""
    data = dict(base or {})
    if path is not None:
        data = merge(data, read_yaml(path))
    data = merge(data, parse_overrides(overrides or []))
    return from_dict(cls, data)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe(cls: type, prefix: str = "", instance: Any = None) -> list[tuple[str, Any, str]]:
    """(key, default, help) rows for every field, for --help and the README. Defaults are read from an instance,
    so a section built by a factory with its own values (e.g. a longer base training) shows those."""
    instance = cls() if instance is None else instance
    rows = []
    types = _field_types(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(types[f.name]):
            rows.extend(describe(types[f.name], key + ".", value))
        else:
            rows.append((key, value, f.metadata.get("help", "")))
    return rows
