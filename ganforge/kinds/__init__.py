"""Data kinds as plug-ins: what toy points, images, tables, text and captioned images each add to a
run (evaluation, pictures, summary entries, ``ganforge sample`` / ``eval`` and the report's panel).

A kind of your own is a :class:`DataKind` registered with :func:`register_kind`, in a module the run
imports (``plugins: [my_module]`` in the config, or ``GANFORGE_PLUGINS=my_module``); its data source
names it in its spec (``DataSpec(..., kind="my-kind")``). See ``docs/guide/kinds.md``.
"""
from ganforge.kinds import captions, images, points, tables, text  # noqa: E402, F401  (the built-in kinds)
from ganforge.kinds.base import (
    KINDS,
    PLUGINS_ENV,
    DataKind,
    Evaluation,
    RunContext,
    check_flags,
    kind_for,
    kind_named,
    kind_of_generator,
    kind_of_run,
    load_plugins,
    register_kind,
)

__all__ = ["KINDS", "PLUGINS_ENV", "DataKind", "Evaluation", "RunContext", "check_flags", "kind_for", "kind_named",
           "kind_of_generator", "kind_of_run", "load_plugins", "register_kind"]
