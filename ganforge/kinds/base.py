"""What a kind of data adds to a run, and the registry of kinds.

A run of any kind is the same loop; what differs between toy points, images, tables, text and
captioned images is around it: how the samples are evaluated during training, what picture is
drawn of them, what the summary says at the end, how ``ganforge sample`` writes them, how
``ganforge eval`` scores a finished run and what the report shows. A :class:`DataKind` says all of
that for one kind; :func:`register_kind` adds one (a plug-in's kind, defined outside the package,
is registered the same way), and the run, the CLI and the report ask :func:`kind_for` which kind
they hold and never name one.

Which kind: a data source may name its kind in its spec (``DataSpec.kind``); otherwise the
registered kinds are asked in turn (:meth:`DataKind.matches`), the most recently registered first,
and points (any tensor data) answer last.
"""
from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ganforge.config import Config
from ganforge.registry import ConfigError, Registry
from ganforge.spec import DataSpec

PLUGINS_ENV = "GANFORGE_PLUGINS"  # comma-separated modules to import before a command (plug-in kinds, data sets)


class Evaluation(Protocol):
    """An evaluation during training: called by :class:`~ganforge.training.callbacks.Every` with the
    trainer; ``last`` holds its latest result and :meth:`summary` its entries in ``summary.json``.
    It may keep state (``state_dict`` / ``load_state_dict``, checkpointed with the run)."""

    last: dict[str, Any]

    def __call__(self, trainer: Any) -> None: ...

    def summary(self) -> dict[str, Any]: ...


@dataclass
class RunContext:
    """What a kind reads of the run it takes part in."""

    cfg: Config
    parts: Any  # the assembled GANParts (data, networks, prior, objective)
    artifact: Any  # the GeneratorArtifact sampled from (the EMA generator when EMA is on)
    logger: Any  # the run's Logger: ``record(step, values)``, ``warn(step, kind, message)``
    health: Any  # the run's Health monitor
    files: Path | None  # the run folder on the process that writes it, else None
    own_data: bool = True  # the data is the config's (not an object the caller passed in)

    @property
    def data(self) -> Any:
        return self.parts.data


class DataKind:
    """One kind of data: each hook is optional (the defaults add nothing).

    Subclass it, or give an object with the same methods; register it with :func:`register_kind`.
    """

    name = ""
    description = ""
    # `ganforge sample` / `ganforge eval` flags this kind reads (others are refused, naming the kinds that do).
    sample_flags: frozenset[str] = frozenset()
    eval_flags: frozenset[str] = frozenset()

    def matches(self, spec: DataSpec, transform: Any) -> bool:
        """Whether data of this spec (and fitted output transform, or None) is of this kind, for
        sources that do not name their kind in the spec."""
        return False

    def evaluations(self, run: RunContext) -> list[Evaluation]:
        """Evaluations to run every ``train.eval_every`` steps and at the end (on the writing process)."""
        return []

    def picture(self, artifact: Any, data: Any, path: Path, title: str) -> Path | None:
        """Draw the samples during training to ``path`` (a ``.png``); return the file written (None: no
        picture; a kind may write another file beside it, as text writes sentences)."""
        return None

    def finish(self, run: RunContext, out: Path) -> None:
        """The end of a finished run: final samples and pictures in the run folder ``out``."""
        self.picture(run.artifact, run.data, out / "samples.png", f"{run.cfg.preset or 'run'}: final samples")

    def summary(self, run: RunContext) -> dict[str, Any]:
        """Entries for ``summary.json`` at the end of a run (beyond its evaluations' own)."""
        return {}

    def sample(self, gen: Any, args: argparse.Namespace) -> dict[str, Any]:
        """``ganforge sample``: write ``args.n`` samples of the generator ``gen`` to ``args.out``; return
        what to print (JSON)."""
        raise ConfigError(f"`ganforge sample` cannot write samples of data kind '{self.name}'")

    def evaluate(self, cfg: Config, gen: Any, run: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
        """``ganforge eval RUN``: score the run's generator; return the result (JSON), which the CLI
        writes to ``out`` (a kind may write more beside it, as text draws its temperature curve)."""
        raise ConfigError(f"no evaluation for data kind '{self.name}'")

    def report(self, run: Any) -> str:
        """An HTML panel of the run for ``ganforge report`` (``run``: its RunData), or ``""``."""
        return ""


KINDS: Registry[DataKind] = Registry("data kind")
_ORDER: list[str] = []  # the order kinds are asked in: plug-ins (most recent first), then the built-in ones
FALLBACK = "points"  # any tensor data


def register_kind(kind: DataKind, builtin: bool = False) -> DataKind:
    """Add a kind; a plug-in's kind is asked before the built-in ones (whose ``matches`` exclude each other)."""
    if not kind.name:
        raise ValueError("a data kind needs a name")
    KINDS.register(kind.name, kind, help=kind.description)
    if builtin:
        _ORDER.append(kind.name)
    else:
        _ORDER.insert(0, kind.name)
    return kind


def kind_named(name: str) -> DataKind:
    if name not in KINDS:
        raise ConfigError(f"unknown data kind '{name}' (known: {', '.join(KINDS.keys())}); a plug-in's kind needs "
                          f"its module imported first: list it in the config's `plugins`, or in {PLUGINS_ENV}")
    return KINDS.get(name)


def kind_for(spec: DataSpec, transform: Any = None) -> DataKind:
    """The kind of data with this spec and fitted output transform (a training run's, or a generator's)."""
    if spec.kind:
        return kind_named(spec.kind)
    for name in _ORDER:
        kind = KINDS.get(name)
        if name != FALLBACK and kind.matches(spec, transform):
            return kind
    return KINDS.get(FALLBACK)


def kind_of_generator(gen: Any) -> DataKind:
    """The kind of a loaded :class:`~ganforge.generator.GeneratorArtifact`."""
    return kind_for(gen.spec, gen.transform)


def kind_of_run(path: Path, config: dict[str, Any], summary: dict[str, Any]) -> DataKind | None:
    """The kind of a run folder (its summary says; runs of earlier versions: found from the config and
    the files), or None when it cannot be told. Imports the plug-ins its config lists."""
    load_plugins(config.get("plugins") or [])
    name = summary.get("kind")
    if isinstance(name, str) and name in KINDS:
        return KINDS.get(name)
    if (config.get("data") or {}).get("name") == "table":
        return KINDS.get("tables")
    if (path / "samples.txt").is_file():
        return KINDS.get("text")
    return None


def check_flags(kind: DataKind, args: argparse.Namespace, flags: dict[str, str], which: str) -> None:
    """Refuse the ``flags`` (attribute -> flag as typed) set in ``args`` that ``kind`` does not read,
    naming the kinds that do (``which``: ``"sample"`` or ``"eval"``)."""
    for attr, flag in flags.items():
        value = getattr(args, attr, None)
        if value is None or value is False or value == []:
            continue
        if attr not in getattr(kind, f"{which}_flags"):
            takers = [n for n in KINDS.keys() if attr in getattr(KINDS.get(n), f"{which}_flags")]
            raise ConfigError(f"{flag} applies to {' and '.join(takers) or 'no'} runs, not to {kind.name} runs")


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import plug-in modules (which register their data kinds and data sets): ``modules``, then those
    named in the ``GANFORGE_PLUGINS`` environment variable. A module that cannot be imported is a
    one-line :class:`ConfigError`."""
    names = [*modules, *(m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip())]
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"plugins: a plug-in is a module name, got {name!r}")
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"plugins: cannot import '{name}' ({e})") from None
