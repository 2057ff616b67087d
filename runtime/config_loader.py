"""Typed configuration loading: dataclass sections, YAML in, ``a.b.0.c=VALUE`` overrides.

One loader for every command (training, the fuse-then-detect pipeline, evaluate/fuse options):

    cfg = load_config_file(MyConfig, "experiments/x.yaml", overrides=["optim.lr_peak=1e-3"])

- values are coerced to the dataclass field's type (``1e-3`` reaches a ``float`` field as 0.001,
  ``"5"`` an ``int`` field as 5); a list element is addressed by its index (``data.train.0.root``);
- unknown keys, wrong types and ``__post_init__`` failures of nested sections are collected and
  reported *all at once*, each with its dotted path, in one :class:`ConfigError`;
- a dataclass may define ``validate(self) -> list[str]`` for checks across fields; it runs on load.

It lives in ``runtime/``, the bottom floor of the import graph
(pipelines -> detection/fusion -> data -> runtime): every command uses it, and it holds no domain
knowledge (generic over any dataclass), so it imports nothing from the project but ``runtime.errors``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from runtime.errors import InputError

T = TypeVar("T")


class ConfigError(InputError, ValueError):
    """A configuration is invalid; ``problems`` lists every problem found, each with its dotted path."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        text = (
            self.problems[0]
            if len(self.problems) == 1
            else (f"{len(self.problems)} problems:\n  " + "\n  ".join(self.problems))
        )
        super().__init__(text)


def match_names(given: Iterable[Any], valid: Sequence[str], what: str) -> list[str]:
    """Each of ``given`` spelled as in ``valid`` (matched case-insensitively: ``vif`` -> ``VIF``).
    A name matching none raises :class:`ConfigError` naming it, the closest valid name
    and every valid one."""
    by_lower = {v.lower(): v for v in valid}
    matched, unknown = [], []
    for name in given:
        found = by_lower.get(str(name).lower())
        (matched if found is not None else unknown).append(found if found is not None else str(name))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
            hints.append(f"{name!r}" + (f" (did you mean {by_lower[close[0]]!r}?)" if close else ""))
        raise ConfigError(f"unknown {what} {', '.join(hints)}; valid: {', '.join(valid)}")
    return matched


# ---- YAML and overrides ---------------------------------------------------------------------
def read_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (``ConfigError`` naming the file otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=VALUE"`` -> ``("a.b", VALUE parsed as YAML)``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value (e.g. --set detector.epochs=5)")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({exc})") from exc


def apply_overrides(
    raw: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any] | None
) -> dict[str, Any]:
    """A deep copy of ``raw`` with ``a.b.0.c=VALUE`` strings (or a ``{"a.b": value}`` mapping) applied."""
    raw = copy.deepcopy(dict(raw))
    if not overrides:
        return raw
    items = (
        list(overrides.items()) if isinstance(overrides, Mapping) else [parse_override(t) for t in overrides]
    )
    for key, value in items:
        node: Any = raw
        *parents, last = key.split(".")
        for p in parents:
            if isinstance(node, list) and p.isdigit() and int(p) < len(node):
                node = node[int(p)]
            elif isinstance(node, dict):
                if node.get(p) is None:
                    node[p] = {}
                node = node[p]
            else:
                raise ConfigError(f"--set {key}: cannot descend into {p!r} (not a section or a list index)")
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {key}: {'.'.join(parents)!r} is not a section")
    return raw


# ---- typed construction ----------------------------------------------------------------------
class _Invalid(Exception):
    pass


def _coerce_scalar(tp: type, value: Any, where: str, problems: list[str]) -> Any:
    if isinstance(value, bool) and tp is not bool:
        problems.append(f"{where}: expected {tp.__name__}, got {value!r}")
        raise _Invalid
    if tp is float:
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except (TypeError, ValueError):
            pass
    elif tp is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):  # e.g. --set name=123
            return str(value)
    elif tp is bool and isinstance(value, bool):
        return value
    problems.append(f"{where}: expected {tp.__name__}, got {value!r}")
    raise _Invalid


def _convert(tp: Any, value: Any, where: str, problems: list[str]) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, where, problems)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for a in inner:  # first alternative that accepts the value (e.g. str | dict)
            trial: list[str] = []
            try:
                return _convert(a, value, where, trial)
            except _Invalid:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in inner)
        problems.append(f"{where}: expected {names}, got {value!r}")
        raise _Invalid
    if origin is list:
        if not isinstance(value, (list, tuple)):
            problems.append(f"{where}: expected a list, got {value!r}")
            raise _Invalid
        return [
            _convert_lenient(args[0] if args else Any, v, f"{where}.{i}", problems)
            for i, v in enumerate(value)
        ]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            problems.append(f"{where}: expected a list, got {value!r}")
            raise _Invalid
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert_lenient(args[0], v, f"{where}.{i}", problems) for i, v in enumerate(value))
        if len(value) != len(args):
            problems.append(f"{where}: expected a list of {len(args)} values, got {value!r}")
            raise _Invalid
        return tuple(
            _convert_lenient(a, v, f"{where}.{i}", problems) for i, (a, v) in enumerate(zip(args, value))
        )
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.append(f"{where}: expected a mapping, got {value!r}")
            raise _Invalid
        return dict(value)
    if tp in (int, float, str, bool):
        return _coerce_scalar(tp, value, where, problems)
    return value


def _convert_lenient(tp: Any, value: Any, where: str, problems: list[str]) -> Any:
    """Like :func:`_convert`, but a bad element is recorded and the rest still checked."""
    try:
        return _convert(tp, value, where, problems)
    except _Invalid:
        return value


def _build_dataclass(cls: type, value: Any, where: str, problems: list[str]) -> Any:
    label = where or cls.__name__
    if not isinstance(value, Mapping):
        problems.append(f"{label}: expected a mapping for {cls.__name__}, got {value!r}")
        raise _Invalid
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    before = len(problems)
    unknown = sorted(set(value) - set(fields))
    if unknown:
        problems.append(f"{label}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    missing = [
        n
        for n, f in fields.items()
        if n not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        problems.append(f"{label}: missing key(s) {missing}")
    kwargs = {}
    for k, v in value.items():
        if k in fields:
            n = len(problems)
            converted = _convert_lenient(hints[k], v, f"{prefix}{k}", problems)
            if len(problems) == n or fields[k].default is dataclasses.MISSING is fields[k].default_factory:
                kwargs[k] = converted  # a bad optional value is left out so the checks below still run
    if missing:
        raise _Invalid
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError, FileNotFoundError) as exc:  # __post_init__ checks of this section
        problems.append(f"{label}: {exc}")
        raise _Invalid from exc
    check = getattr(obj, "validate", None)
    if callable(check):  # cross-field checks, reported together with the problems found above
        problems.extend(f"{prefix}{p}" for p in check())
    if len(problems) > before:
        raise _Invalid
    return obj


def build(cls: type[T], raw: Mapping[str, Any], source: str = "config", path: str = "") -> T:
    """Instantiate dataclass ``cls`` from plain data; every problem at once in one :class:`ConfigError`.

    Each problem names its dotted key, starting with ``path`` (where ``raw`` sits in a larger
    config, e.g. ``dataset.synthetic``), after ``source: `` (the file) when ``source`` is given.
    """
    problems: list[str] = []
    try:
        return _build_dataclass(cls, raw, path, problems)
    except _Invalid:
        # `from None`: the collected problems are the whole story (no code bug is hidden here)
        raise ConfigError([f"{source}: {p}" if source else p for p in problems]) from None


def load_config_file(
    cls: type[T], path: str | os.PathLike, overrides: Sequence[str] | Mapping[str, Any] | None = None
) -> T:
    """Read YAML ``path``, apply ``overrides``, build and validate ``cls``."""
    return build(cls, apply_overrides(read_yaml_mapping(path), overrides), str(path))


def to_plain(obj: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists, recursively (YAML/JSON/MLflow friendly)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are kept as values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
