"""The grid of ``lab sweep``: parsing ``--grid`` and grid files into settings, naming a
setting, and turning it into ``lab fit`` arguments checked against the config parser.

A grid file is YAML: ``grid`` maps keys to lists of values (every combination is run),
or is a list of such maps (their settings are run one after the other, e.g. a sweep over
lambda with alpha fixed, then over alpha with lambda fixed)::

    grid:
      - {model.init_args.losses.1.init_args.weight: [0.01, 0.1, 1]}
      - {model.init_args.losses.1.init_args.lr: [0.1, 1]}

A value may be a map, e.g. a whole optimizer, and one grid map may set several keys
together (a list of one-value maps is a list of hand-picked settings)::

    grid:
      - {model.init_args.optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.01}},
         data.init_args.batch_size: 64}
      - {model.init_args.optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}},
         data.init_args.batch_size: 64}

A list value is always a list of values to sweep: a value that is itself a list (Adam's
``betas``) is written inside one, ``betas: [[0.9, 0.999], [0.5, 0.999]]``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lab.cli import main
from lab.commands.report import setting_names
from lab.errors import LabError

Setting = dict[str, Any]


def parse_grid_argument(text: str) -> dict[str, list[Any]]:
    """``'model.margin=[0.1,0.2]'`` -> ``{"model.margin": [0.1, 0.2]}`` (YAML values; a
    single value is a one-value list)."""
    key, sep, raw = text.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key or not raw.strip():
        raise LabError(
            f"--grid expects KEY=[V1,V2,...], e.g. 'model.margin=[0.1,0.2]', got {text!r}"
        )
    try:
        values = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise LabError(f"--grid {key}: {raw!r} is not a YAML value or list ({error})") from None
    values = values if isinstance(values, list) else [values]
    if not values:
        raise LabError(f"--grid {key}: the list of values is empty")
    return {key: values}


def load_grid_file(path: Path) -> list[dict[str, list[Any]]]:
    """The grids of a YAML grid file (see the module docstring)."""
    if not path.is_file():
        raise LabError(f"grid file {path} does not exist")
    loaded = yaml.safe_load(path.read_text()) or {}
    grids = loaded.get("grid") if isinstance(loaded, dict) else None
    if isinstance(grids, dict):
        grids = [grids]
    if not isinstance(grids, list) or not all(isinstance(g, dict) and g for g in grids):
        raise LabError(f"{path}: expected 'grid:' holding a map of KEY: [values] or a list of maps")
    return [{str(k): v if isinstance(v, list) else [v] for k, v in g.items()} for g in grids]


def expand(grids: Sequence[dict[str, list[Any]]]) -> list[Setting]:
    """Every setting of the grids: the product of each grid's lists, grids one after another,
    duplicates dropped (first kept)."""
    settings: list[Setting] = []
    for grid in grids:
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            setting = dict(zip(keys, values, strict=True))
            if setting not in settings:
                settings.append(setting)
    return settings


def swept_keys(settings: Sequence[Setting]) -> list[str]:
    """Every key the settings set, in the order they first appear."""
    return list(dict.fromkeys(k for s in settings for k in s))


def describe(value: Any) -> Any:
    """A swept value as the table and folder names show it: scalars as they are, a class
    map as ``SGD(lr=0.01, momentum=0.9)``, other maps and lists as short text."""
    if isinstance(value, dict):
        if "class_path" in value:
            name = str(value["class_path"]).rsplit(".", 1)[-1]
            arguments = value.get("init_args") or {}
            inner = ", ".join(f"{k}={describe(v)}" for k, v in arguments.items())
            return f"{name}({inner})"
        return "{" + ", ".join(f"{k}={describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(describe(v)) for v in value) + "]"
    return value


def slug(setting: Setting) -> str:
    """A folder name for a setting, e.g. ``margin-0.2``, ``center_weight-0.1_center_lr-1``
    or ``optimizer-SGD_lr=0.01_batch_size-1``."""
    names = setting_names(list(setting))
    parts = [f"{names[k]}-{describe(v)}" for k, v in setting.items()]
    text = re.sub(r"[^A-Za-z0-9._=-]+", "_", "_".join(parts))
    text = re.sub(r"_{2,}", "_", text).replace("-_", "-")
    return text.strip("_") or "default"


def _override(key: str, value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return f"--{key}={text}"


def setting_overrides(base: list[str], setting: Setting) -> list[str]:
    """The command-line arguments of a setting. A key may index a list, e.g.
    ``model.init_args.losses.1.init_args.weight`` (the second loss term's weight): the
    command line cannot, so the list is read from the resolved config of ``base`` and
    passed whole, with every indexed value of the setting set in it."""
    plain = {k: v for k, v in setting.items() if not any(p.isdigit() for p in k.split("."))}
    indexed = {k: v for k, v in setting.items() if k not in plain}
    args = [_override(k, v) for k, v in plain.items()]
    if not indexed:
        return args
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code, message = run_lab(["fit", *base, *args, "--print_config"])
    if code != 0:
        raise LabError(f"sweep: cannot resolve {', '.join(indexed)}: {message}")
    config = yaml.safe_load(printed.getvalue())
    lists: dict[str, list] = {}
    for key, value in indexed.items():
        parts = key.split(".")
        at = next(i for i, p in enumerate(parts) if p.isdigit())
        list_key = ".".join(parts[:at])
        node: Any = config
        for part in parts[:at]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, list) or int(parts[at]) >= len(node):
            raise LabError(f"sweep key {key}: {list_key} has no item {parts[at]} in the config")
        items = lists.setdefault(list_key, node)
        target = items[int(parts[at])]
        for part in parts[at + 1 : -1]:
            target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
        target[parts[-1]] = value
    return args + [_override(k, v) for k, v in lists.items()]


class _Tail(io.TextIOBase):
    """A stderr that keeps the end of what is written and, with ``echo``, passes it on."""

    def __init__(self, echo: Any = None, keep: int = 8192) -> None:
        self.echo, self.keep, self.text = echo, keep, ""

    def write(self, text: str) -> int:
        self.text = (self.text + text)[-self.keep :]
        if self.echo is not None:
            self.echo.write(text)
        return len(text)

    def flush(self) -> None:
        if self.echo is not None:
            self.echo.flush()

    def isatty(self) -> bool:  # progress bars draw as on the terminal they pass through
        return self.echo is not None and self.echo.isatty()

    def getvalue(self) -> str:
        return self.text


def run_lab(args: list[str], echo: bool = False) -> tuple[int, str]:
    """Run ``lab`` in-process; its exit code and the last line it wrote to stderr (with
    ``echo``, what it writes to stderr is shown as well: progress bars, warnings)."""
    stderr = _Tail(sys.stderr if echo else None)
    code = 0
    with contextlib.redirect_stderr(stderr):
        try:
            main(args)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    return code, re.sub(r"^(lab: )?error: ", "", last)


def check_settings(base: list[str], settings: list[Setting]) -> None:
    """Parse every setting's full config (nothing is built or run); raise on the first
    one the parser refuses."""
    for setting in settings:
        overrides = setting_overrides(base, setting)
        with contextlib.redirect_stdout(io.StringIO()):
            code, message = run_lab(["fit", *base, *overrides, "--print_config"])
        if code != 0:
            raise LabError(f"sweep setting {setting} is not a valid config: {message}")
