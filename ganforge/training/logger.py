"""The training log: :class:`Logger` writes ``log.jsonl`` (and TensorBoard events), drives the progress bar
and collects the run's warnings."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from torch import Tensor

from ganforge.config import flatten


def _floats(out: dict[str, Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in out.items()}


def _drop_partial_last_line(path: Path) -> None:
    """Cut a log back to its last complete line.

    A run killed mid-write can leave half a record at the end of ``log.jsonl``; the resumed run
    would glue its first record to it and the file would no longer be JSON lines.
    """
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        end = f.seek(0, 2)
        pos = end
        while pos > 0:
            start = max(0, pos - 65536)
            f.seek(start)
            chunk = f.read(pos - start)
            if pos == end and chunk.endswith(b"\n"):
                return  # complete
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                return
            pos = start
        f.truncate(0)


class Logger:
    """Writes ``log.jsonl`` (and TensorBoard events), drives the progress bar, collects warnings."""

    def __init__(self, path: Path | None, every: int, progress: bool = True,
                 tensorboard_dir: Path | None = None) -> None:
        self.path, self.every, self.progress = path, max(1, every), progress
        self.bar: Any = None
        self.tb: Any = None
        self.tb_dir = tensorboard_dir
        self.last: dict[str, float] = {}
        self.warnings: list[dict[str, Any]] = []
        self._file: Any = None

    def wants_stats(self, trainer: Any) -> bool:
        return (trainer.step_num + 1) % self.every == 0

    def on_train_start(self, trainer: Any) -> None:
        if self.path is not None:
            _drop_partial_last_line(self.path)
            self._file = open(self.path, "a", buffering=1)
        if self.tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.tb_dir))
            except ImportError:  # tensorboard is optional
                self.tb = None
        if self.progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=trainer.cfg.steps, initial=trainer.step_num, desc="train",
                            dynamic_ncols=True, leave=True)

    def record(self, step: int, values: dict[str, Any]) -> None:
        """Append one record to the log (and TensorBoard, for numbers)."""
        if self._file is not None:
            self._file.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def image(self, step: int, tag: str, image: Any) -> None:
        """Send a picture to TensorBoard (a no-op when TensorBoard is off).

        ``image`` is an array or tensor (H, W), (H, W, C) uint8 or float in [0, 1], or the path of a
        picture file (a sample grid just written).
        """
        if self.tb is None:
            return
        import numpy as np

        if isinstance(image, (str, Path)):
            from PIL import Image

            with Image.open(image) as img:
                image = np.asarray(img.convert("RGB"))
        arr = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        self.tb.add_image(tag, arr, step, dataformats="HWC")

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, Any]) -> None:
        """Write the run's settings with its final metrics to TensorBoard's HParams view (no-op when
        TensorBoard is off). Nested settings are flattened to dotted keys; values that are not
        numbers, strings or booleans are written as their JSON text, ``None`` left out."""
        if self.tb_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams as hparams_summary
        except ImportError:  # tensorboard is optional
            return
        flat = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v, default=str)
                for k, v in flatten(hparams).items() if v is not None}
        scores = {f"hparam/{k}": float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        # The summary goes into the run's own folder (add_hparams would make a sub-run per call); the
        # metrics are also scalars there, which is where the HParams view reads their values.
        exp, ssi, sei = hparams_summary(flat, scores)
        writer = self.tb if self.tb is not None else SummaryWriter(str(self.tb_dir))
        try:
            fw = writer._get_file_writer()
            for summary in (exp, ssi, sei):
                fw.add_summary(summary)
            for k, v in scores.items():
                writer.add_scalar(k, v)
        finally:
            if writer is not self.tb:
                writer.close()

    def warn(self, step: int, kind: str, message: str, screen: str | None = None, **fields: Any) -> None:
        """Log a health warning (with ``fields``, numbers that go with it) and show it on screen above
        the progress bar (as ``screen`` when given)."""
        self.warnings.append({"step": step, "kind": kind, "message": message, **fields})
        self.record(step, {"warning": kind, "message": message, **fields})
        text = screen if screen is not None else f"[ganforge] step {step}: {message}"
        if self.bar is not None:
            self.bar.write(text)
        else:
            import sys
            print(text, file=sys.stderr)

    def on_note(self, trainer: Any, text: str) -> None:
        """A decision of the run worth knowing (what ``train.autocast: auto`` picked and why)."""
        self.record(trainer.step_num, {"note": text})
        if self.progress:
            import sys
            print(f"[ganforge] {text}", file=sys.stderr)

    def on_step_end(self, trainer: Any, out: dict[str, Tensor]) -> None:
        step = trainer.step_num
        if step % self.every == 0:
            self.last = _floats(out)
            self.record(step, self.last)
            if self.bar is not None:
                shown = {k: f"{v:.3g}" for k, v in self.last.items()
                         if k in ("d_loss", "g_loss", "d_real", "d_fake", "cond_loss", "reconstruction", "kl")}
                self.bar.set_postfix(shown, refresh=False)
        if self.bar is not None:
            self.bar.update(1)

    def state_dict(self) -> dict[str, Any]:
        """The warnings so far (a resumed run's summary lists those of every segment). The checks of
        a finished run's final evaluation are left out: a run continued past it is judged at its own end."""
        return {"warnings": [dict(w) for w in self.warnings if not w.get("final")]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The saved warnings first, then any this process has logged since (a NaN rollback restores
        # a checkpoint older than the warning that caused it: that warning happened and stays).
        saved = [dict(w) for w in state.get("warnings", [])]
        self.warnings = saved + [w for w in self.warnings if w not in saved]

    def rewind(self, step: int) -> None:
        """Training went back to ``step`` (a NaN rollback): the progress bar follows."""
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh()

    def close_bar(self) -> None:
        """End the progress bar (an interrupted run: the log stays open for the last records)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_train_end(self, trainer: Any) -> None:
        # Only the bar ends here: callbacks after this one (the final evaluation) still log; the
        # owner of the logger calls close() (train() does so in its finally).
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
