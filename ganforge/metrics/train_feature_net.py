"""Train the shipped digit classifier, deterministically.

    python -m ganforge.metrics.train_feature_net [--epochs 12] [--out PATH.safetensors] [--results PATH.json]

Data: the embedded MNIST ``fit`` split (the 5,000 training images plus the even half of the test
set); held-out accuracy on the ``heldout`` split (the odd half of the test set) is printed at the
end with the weights' SHA-256, which :mod:`ganforge.metrics.digits` pins. Same torch version, thread
count and kind of CPU, same bytes (an AVX2-only AMD EPYC gives other bytes than the AVX-512 machine
the shipped file was trained on, at the same 99.42% held-out accuracy).

``--out`` is where the weights go: by default ``digits-retrained.safetensors`` in the current folder,
never the shipped file, so a retraining cannot replace the weights every metric is pinned to by
accident (pass the shipped path explicitly to do that on purpose). ``--results`` writes
a JSON results file: accuracies, SHA-256 and whether it equals the pinned one, seed, epochs, the
command line, torch version, thread count and CPU.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

from ganforge.data.mnist import embedded_mnist, to_tensor_images
from ganforge.io import atomic_write
from ganforge.metrics.digits import WEIGHTS_FILE, WEIGHTS_SHA256, DigitNet, sha256_bytes


def augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Small random affine warps (rotation ±10°, scale 0.9-1.1, shift ±2 px): digits as people write them."""
    n = len(x)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 / 14)  # grid units: 14 px = 1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Background is -1: pad with it, not with grid_sample's zeros (which would be mid-grey).
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


@torch.no_grad()
def accuracy(net: DigitNet, x: Tensor, y: Tensor, batch: int = 1000) -> float:
    net.eval()
    pred = torch.cat([net(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).float().mean())


def train(epochs: int, batch_size: int, lr: float, seed: int) -> tuple[DigitNet, dict]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xf, yf = embedded_mnist("fit")
    xh, yh = embedded_mnist("heldout")
    x, y = to_tensor_images(xf), torch.from_numpy(yf)
    x_held, y_held = to_tensor_images(xh), torch.from_numpy(yh)
    net = DigitNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(net(augment(x[idx], gen)), y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}, "
              f"held-out accuracy {accuracy(net, x_held, y_held):.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    report = {"heldout_accuracy": accuracy(net, x_held, y_held), "fit_accuracy": accuracy(net, x, y),
              "n_fit": len(x), "n_heldout": len(x_held), "epochs": epochs, "seed": seed,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "seconds": round(time.perf_counter() - t0, 1)}
    return net.eval(), report


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (part of what makes it reproducible)")
    p.add_argument("--out", type=Path, default=Path("digits-retrained.safetensors"),
                   help="where the weights go (default: %(default)s; the shipped file is "
                        f"{Path(__file__).parent / 'weights' / WEIGHTS_FILE})")
    p.add_argument("--results", type=Path, default=None,
                   help="also write the report as a JSON results file (e.g. docs/results/digit_classifier.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    net, report = train(args.epochs, args.batch_size, args.lr, args.seed)
    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    # Only what is deterministic goes into the file: its SHA-256 is the metric's identity.
    meta = {k: report[k] for k in ("heldout_accuracy", "n_fit", "n_heldout", "epochs", "seed", "torch")}
    atomic_write(args.out, lambda tmp: save_file(tensors, tmp, metadata={"report": json.dumps(meta)}))
    report["sha256"] = sha256_bytes(args.out.read_bytes())
    report["weights"] = str(args.out)
    report["pinned_sha256"] = WEIGHTS_SHA256
    report["sha256_matches_pinned"] = report["sha256"] == WEIGHTS_SHA256
    if args.results is not None:
        cmd = " ".join(["python -m ganforge.metrics.train_feature_net",
                        *(sys.argv[1:] if argv is None else argv)])
        results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "command": cmd, **report, "cpu": _cpu_model(), "python": platform.python_version()}
        atomic_write(args.results, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2) + "\n"))
    print(f"held-out accuracy {100 * report['heldout_accuracy']:.2f}% on {report['n_heldout']} images "
          f"(target >= 98.5%); weights {args.out} sha256 {report['sha256']}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
