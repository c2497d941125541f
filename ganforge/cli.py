"""The ``ganforge`` command line (see DESIGN.md's contract).

Exit codes: 0 done, 2 user error (one line, no traceback), 1 anything else.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ganforge.registry import ConfigError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, as for every user error
        print(f"ganforge: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _cmd_train(args: argparse.Namespace) -> int:
    from ganforge.config import load_config
    from ganforge.training.run import load_run_config, train

    overrides = list(args.set or [])
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    if args.resume:
        from ganforge.config import apply_overrides, from_dict, to_dict
        cfg = from_dict(apply_overrides(to_dict(load_run_config(args.resume)), overrides))
        out = args.resume
        if cfg.data.name == "table" and not (getattr(cfg.data, "path", "") or cfg.data.options.get("path")):
            # A fit of `ganforge tabular fit` / TabularGAN: its table and transformer come from there.
            raise ConfigError(f"{out} is a table fit: continue it with `ganforge tabular fit TABLE --out {out} "
                              "--resume` (the same table and options)")
    else:
        if not args.config:
            raise ConfigError("train needs a CONFIG (preset name or YAML path) or --resume DIR")
        cfg = load_config(args.config, overrides)
        out = args.out or f"runs/{cfg.preset or Path(args.config).stem}"
    if args.print_config:
        from ganforge.config_doc import commented_yaml

        print(commented_yaml(cfg, None if args.resume else args.config, overrides), end="")
        return 0
    if args.no_progress:
        cfg.train.progress = False
    from ganforge.training.distributed import init_from_env, shutdown
    world = init_from_env(cfg.train.device)  # a process of a torchrun run, or the only one
    try:
        result = train(cfg, out, resume=bool(args.resume), world=world)
    finally:
        shutdown()
    if not world.writer:
        return 0  # rank 0 reports for the run
    s = result.summary
    keys = ("status", "modes_captured", "modes_total", "high_quality_fraction", "reverse_kl_modes", "fid", "kid",
            "label_accuracy", "code_accuracy", "q_accuracy", "modes_covered", "kl_to_uniform", "nll_oracle", "nll_test",
            "bleu2", "bleu5", "self_bleu2", "self_bleu5", "wall_seconds")
    print(_headline(cfg.preset or str(args.config), s, Path(out)), file=sys.stderr)
    print(json.dumps({k: s[k] for k in keys if k in s} | {"out": str(out)}))
    return 0


def _headline(name: str, s: dict[str, Any], out: Path) -> str:
    """One human line: what was reached, how fast, and what to look at."""
    parts = [name]
    if s.get("status", "ok") != "ok":
        parts.append(f"status {s['status']}")
    if "image_metrics_skipped" in s:
        parts.append("image metrics skipped (see the warning)")
    if "modes_captured" in s:
        parts.append(f"{s['modes_captured']}/{s['modes_total']} modes, "
                     f"{100 * s['high_quality_fraction']:.1f}% high-quality samples, "
                     f"KL(modes || uniform) {s['reverse_kl_modes']:.3f}")
    if "fid" in s:
        ref = s.get("eval_protocol", {}).get("reference", "the reference")
        kid = f", KID {s['kid']:.2f}" if "kid" in s else ""
        parts.append(f"FID {s['fid']:.1f}{kid} against {ref} ({s.get('eval_protocol', {}).get('extractor')} features)")
    for key, label in (("label_accuracy", "label accuracy"), ("code_accuracy", "code accuracy"),
                       ("q_accuracy", "Q's accuracy on held-out digits")):
        if key in s:
            parts.append(f"{label} {100 * s[key]:.1f}%")
    table = s.get("table_quality")
    if table:
        parts.append(", ".join(f"{label} {table[key]:.3f}" for key, label in (
            ("column_shapes", "column shapes"), ("column_pair_trends", "pair trends"),
            ("detection_auc", "detection AUC")) if table.get(key) is not None) + " against held-out rows")
    if "modes_covered" in s:
        parts.append(f"{s['modes_covered']}/1000 modes, KL to uniform {s['kl_to_uniform']:.3f}")
    text = [f"{label} {s[key]:.3f}" for key, label in (("nll_oracle", "NLL-oracle"), ("nll_test", "NLL-test"),
                                                       ("bleu2", "BLEU-2"), ("bleu5", "BLEU-5"),
                                                       ("self_bleu2", "Self-BLEU-2")) if key in s]
    if text:
        parts.append(", ".join(text))
    parts.append(f"{s['steps']} steps in {s['wall_seconds']:.0f} s")
    picture = next((p for p in (out / "samples.png", out / "samples.txt") if p.is_file()), None)
    if picture is not None:
        parts.append(f"look at {picture}")
    return "ganforge: " + "; ".join(parts)


def _cmd_presets(args: argparse.Namespace) -> int:
    from ganforge.config import load_config, load_yaml, preset_names

    if args.name:
        from ganforge.config_doc import commented_yaml

        print(commented_yaml(load_config(args.name), args.name), end="")
        return 0
    names = preset_names()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:{width}s}  {load_yaml(name).get('description', '')}")
    return 0


SAMPLE_FLAGS = {"label": "--label", "caption": "--caption", "temperature": "--temperature"}
EVAL_FLAGS = {"curve": "--curve", "temperature": "--temperature", "fast": "--fast", "metrics": "--metrics",
              "reference": "--reference", "extractor": "--extractor"}


def _cmd_sample(args: argparse.Namespace) -> int:
    from ganforge.generator import load
    from ganforge.kinds import check_flags, kind_of_generator, load_plugins

    if args.n <= 0:
        raise ConfigError("--n must be positive")
    load_plugins(_run_plugins(Path(args.run)))
    gen = load(args.run)
    kind = kind_of_generator(gen)
    check_flags(kind, args, SAMPLE_FLAGS, "sample")
    print(json.dumps(kind.sample(gen, args)))
    return 0


def _run_plugins(run: Path) -> list[str]:
    """The plug-ins a run folder's config lists (none for a bare generator file)."""
    if not (run / "config.yaml").is_file():
        return []
    from ganforge.training.run import load_run_config

    return list(load_run_config(run).plugins)


def _cmd_eval(args: argparse.Namespace) -> int:
    from ganforge.io import atomic_write_text
    from ganforge.metrics.evaluate import DEFAULT_METRICS, evaluate

    src = Path(args.source)
    result: dict[str, Any]
    if (src / "config.yaml").is_file():
        from ganforge.generator import load
        from ganforge.kinds import check_flags, kind_of_generator, load_plugins
        from ganforge.training.run import load_run_config

        cfg = load_run_config(src)
        load_plugins(cfg.plugins)
        gen = load(src)
        kind = kind_of_generator(gen)
        check_flags(kind, args, EVAL_FLAGS, "eval")
        out: Path | None = Path(args.out) if args.out else src / "eval.json"
        result = kind.evaluate(cfg, gen, src, args, out)
    else:  # real images: a folder, an array file or a data set spec such as mnist:train5k
        result = evaluate(args.source, reference=args.reference or "mnist:heldout",
                          metrics=args.metrics or list(DEFAULT_METRICS), n=args.n,
                          extractor=args.extractor or "auto", progress=not args.no_progress)
        out = Path(args.out) if args.out else None
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.what == "theory":
        from ganforge.demos.theory import run_theory_demo
        run_theory_demo(Path(args.out), progress=not args.no_progress)
        return 0
    raise ConfigError(f"unknown demo '{args.what}'")


def _cmd_report(args: argparse.Namespace) -> int:
    from ganforge.report.html import write_report

    out = write_report(args.runs, args.out)
    print(f"ganforge: report of {len(args.runs)} run{'s' if len(args.runs) > 1 else ''} written to {out}",
          file=sys.stderr)
    print(json.dumps({"out": str(out)}))
    return 0


def _tabular_command(name: str) -> Any:
    """A ``ganforge tabular`` command, imported when it runs (pandas is loaded only then)."""

    def run(args: argparse.Namespace) -> int:
        from ganforge.tabular import cli

        return int(getattr(cli, name)(args))

    return run


def _version() -> str:
    """``ganforge X (torch Y, Python Z)``, read from the installed metadata (importing torch is slow)."""
    import platform
    from importlib import metadata

    from ganforge.version import __version__

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return f"ganforge {__version__} (torch {torch_version}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ganforge", description="Train, evaluate and diagnose GANs.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a preset or a YAML config")
    t.add_argument("config", nargs="?", help="preset name (see `ganforge presets`) or YAML path")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    t.add_argument("--out", help="run folder (default runs/PRESET)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--steps", type=int, help="training length (generator updates)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--print-config", action="store_true",
                   help="print the resolved config (commented YAML) and exit without training")
    t.set_defaults(fn=_cmd_train)

    ps = sub.add_parser("presets", help="list the presets, or show one resolved and commented")
    ps.add_argument("name", nargs="?", help="a preset (or YAML file): print its resolved config with comments")
    ps.set_defaults(fn=_cmd_presets)

    s = sub.add_parser("sample", help="sample from a trained run")
    s.add_argument("run", help="run folder")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--out", required=True,
                   help="file.npz, file.csv, file.png (a grid), or a folder (a PNG per image)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--label", type=int, default=None, help="class to generate (conditional models)")
    s.add_argument("--caption", action="append", default=None, metavar="TEXT",
                   help="text to image: what to draw (repeat for a grid: a row per caption, the same noise "
                   "down each column); --n images per caption")
    s.add_argument("--temperature", type=float, default=None,
                   help="text: softmax temperature of the sampling (below 1: safer, less varied sentences)")
    s.set_defaults(fn=_cmd_sample)

    e = sub.add_parser("eval", help="evaluate a run (writes RUN/eval.json) or a set of real images")
    e.add_argument("source", metavar="RUN_DIR", help="run folder; or an image folder, .npz/.npy file, "
                   "or data set spec such as mnist:train5k")
    e.add_argument("--metrics", default=None, help="comma-separated: fid,kid,is,pr,dc,modes")
    e.add_argument("--n", type=int, default=None, help="number of samples (default: the run's eval.n)")
    e.add_argument("--reference", default=None, help="data set spec, folder or array file (default: held-out split)")
    e.add_argument("--extractor", default=None,
                   help="feature extractor: auto (digits for 1x28x28 grey images, else inception), digits, inception, "
                        "inception-v3 (default: the run's eval.extractor, else auto)")
    e.add_argument("--out", default=None, help="where to write the JSON (default RUN_DIR/eval.json)")
    e.add_argument("--curve", nargs="?", const="", default=None, metavar="T1,T2,...",
                   help="text: the quality-diversity curve over softmax temperatures (default 0.6..1.5); "
                   "a PNG is written beside the JSON")
    e.add_argument("--temperature", type=float, default=None, help="text: sampling temperature (default 1)")
    e.add_argument("--fast", action="store_true",
                   help="text: Texygen's fast mode (BLEU on 500 references and 500 sentences)")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(fn=_cmd_eval)

    from ganforge.tabular.cli import add_commands

    add_commands(sub, _Parser, _tabular_command)

    d = sub.add_parser("demo", help="demonstrations")
    d.add_argument("what", choices=["theory"])
    d.add_argument("--out", required=True)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(fn=_cmd_demo)

    r = sub.add_parser("report", help="one self-contained HTML page about a run, or several compared")
    r.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s); several: curves overlaid, config diff")
    r.add_argument("--out", default=None, help="the HTML file (default RUN/report.html; several runs: report.html)")
    r.set_defaults(fn=_cmd_report)
    return p


def _warning_line(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    """Warnings on the command line: one line each, without the source line Python shows."""
    return f"ganforge: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import warnings

    warnings.formatwarning = _warning_line  # type: ignore[assignment]
    from ganforge.training.callbacks import Interrupted, TrainingDiverged

    try:
        return int(args.fn(args))
    except ConfigError as e:
        print(f"ganforge: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"ganforge: {e}", file=sys.stderr)
        return 130 if e.signal_name == "SIGINT" else 143
    except TrainingDiverged as e:
        print(f"ganforge: training stopped: {e} (last good checkpoint kept)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ganforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`ganforge presets | head`): stop quietly, as Unix tools do, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
