"""Grids of experiments: `grids: {NAME: {train.lr: [5e-4, 1e-3], train.seed: [1, 2, 3]}}` in the
config expands to one named variant per combination, named by its values
(`NAME_lr0p0005_seed1`), so that a sweep or seed replicas need no copied config and every path
says what it holds. torch-free: the workflow reads it at start-up.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pasero.errors import ConfigError

SECTIONS = ("tokenizer", "train", "select", "decode", "score")
SEED_KEY = "train.seed"


@dataclass(frozen=True)
class GridPoint:
    """One combination of a grid: its variant's overrides, and the name of the point without its
    seed (the seed replicas of a point share it: the summary averages over them)."""

    grid: str
    name: str
    overrides: dict[str, dict[str, Any]]
    point: str
    seed: int | None


def value_name(value: Any) -> str:
    """A value as a part of a variant name: 0.0005 -> 0p0005, -1 -> m1, True -> true."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    text = text.replace("-", "m").replace("+", "").replace(".", "p")
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def expand(name: str, axes: Mapping[str, Sequence[Any]]) -> list[GridPoint]:
    """Every combination of the axes, in the order they are written (the last varies fastest)."""
    for key, values in axes.items():
        section, _, option = key.partition(".")
        if section not in SECTIONS or not option or "." in option:
            raise ConfigError(f"grids/{name}/{key}: a grid key is SECTION.OPTION with SECTION one of "
                              f"{', '.join(SECTIONS)}, e.g. train.lr")
        if not isinstance(values, list | tuple) or not values:
            raise ConfigError(f"grids/{name}/{key}: give a list of values, e.g. [0.1, 0.3]")
    points = []
    for combination in itertools.product(*axes.values()):
        overrides: dict[str, dict[str, Any]] = {}
        parts, point_parts, seed = [name], [name], None
        for key, value in zip(axes, combination, strict=True):
            section, _, option = key.partition(".")
            overrides.setdefault(section, {})[option] = value
            parts.append(f"{option}{value_name(value)}")
            if key == SEED_KEY:
                seed = value
            else:
                point_parts.append(parts[-1])
        points.append(GridPoint(name, "_".join(parts), overrides, "_".join(point_parts), seed))
    return points


def expand_all(grids: Mapping[str, Mapping[str, Sequence[Any]]], variants: Mapping[str, Any]) -> list[GridPoint]:
    """Every grid's points; a point named like a variant of the config is an error."""
    points = [p for name, axes in grids.items() for p in expand(name, axes)]
    for point in points:
        if point.name in variants:
            raise ConfigError(f"grids: the point {point.name} has the name of a variant of variants:; rename one")
    return points
