"""TensorBoard: a run's curves and spectra, live while it trains (``--log tensorboard DIR``,
then ``tensorboard --logdir DIR``).

Per epoch, as scalars: ``loss/train``, ``loss/test``, ``grad_norm``, ``spectrum/radius``
(the coupled matrix's spectral radius), the leading eigenvalues of the coupled matrix P
(``eig_P/k/real``, ``eig_P/k/imag`` for the ``leading`` of largest modulus with Im >= 0, one
per conjugate pair), the effective gains (``gains/k_i_j``, regulation tasks) and the tracking
probes (``probes/f=0.1Hz``, ...). Every ``image_every`` epochs, and at the last one, the
spectra of P and of W as a picture (``spectrum``): eigenvalues in the complex plane with the
unit circle. Needs the optional ``tensorboardX`` package (``pip install tensorboardX``, or the
``tensorboard`` extra).

Example
-------
>>> logger = TensorBoardLogger("logs/closed")                    # doctest: +SKIP
>>> train(config, "runs/closed.h5", loggers=[logger])            # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from closedloop.errors import ConfigError
from closedloop.training.loggers.base import Logger

if TYPE_CHECKING:
    from closedloop.config import RunConfig
    from closedloop.runs.store import EpochRecord


class TensorBoardLogger(Logger):
    """Writes TensorBoard event files into ``folder`` (module docstring).

    Parameters
    ----------
    folder
        The run's log folder.
    image_every
        Epochs between two pictures of the spectra.
    leading
        How many eigenvalues of P are logged as scalars.
    """

    def __init__(self, folder: str | Path, image_every: int = 100, leading: int = 3) -> None:
        super().__init__(folder)
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ConfigError("--log tensorboard needs the tensorboardX package "
                              "(pip install tensorboardX)") from None
        self._writer_class = SummaryWriter
        self.image_every, self.leading = image_every, leading
        self.writer: Any = None
        self.frequencies: list[float] = []
        self.last: EpochRecord | None = None
        self.drawn = -1

    def start(self, config: RunConfig, path: Path) -> None:
        """Open the event file; remember the probe frequencies of a tracking run."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = self._writer_class(logdir=str(self.folder))
        self.writer.add_text("run", f"{path} ({config.preset}, training.mode "
                                    f"{config.training.mode}, seed {config.seed})", 0)
        if config.task.kind == "tracking":
            self.frequencies = sorted(float(f) for axis in config.task.frequencies
                                      for f in axis)

    def epoch(self, record: EpochRecord) -> None:
        """The epoch's scalars, and the spectra's picture every ``image_every`` epochs."""
        step = record.epoch
        for tag, value in self.scalars(record).items():
            if np.isfinite(value):
                self.writer.add_scalar(tag, value, step)
        if step % self.image_every == 0:
            self.draw(record)
        self.last = record

    def finish(self, status: str) -> None:
        """The last epoch's picture, then close the event file."""
        if self.last is not None and self.drawn != self.last.epoch:
            self.draw(self.last)
        self.writer.add_text("status", status, 0 if self.last is None else self.last.epoch)
        self.writer.close()

    def scalars(self, record: EpochRecord) -> dict[str, float]:
        """Every scalar logged for ``record``, by tag."""
        values = {"loss/train": record.train_loss, "loss/test": record.test_loss,
                  "grad_norm": record.grad_norm, "spectrum/radius": record.spectral_radius}
        upper = record.coupled_eigenvalues[record.coupled_eigenvalues.imag >= 0]
        upper = upper[np.isfinite(upper)]
        for k, value in enumerate(upper[np.argsort(-np.abs(upper))][:self.leading]):
            values[f"eig_P/{k}/real"] = float(value.real)
            values[f"eig_P/{k}/imag"] = float(value.imag)
        if record.gains is not None:
            for (i, j), gain in np.ndenumerate(np.asarray(record.gains)):
                values[f"gains/k_{i}_{j}"] = float(gain)
        if record.probe_errors is not None:
            names = ([f"f={f:g}Hz" for f in self.frequencies]
                     if len(self.frequencies) == len(record.probe_errors)
                     else [str(i) for i in range(len(record.probe_errors))])
            for name, error in zip(names, record.probe_errors, strict=True):
                values[f"probes/{name}"] = float(error)
        return {tag: float(value) for tag, value in values.items()}

    def draw(self, record: EpochRecord) -> None:
        """eig(P) and eig(W) of ``record`` in the complex plane, as the ``spectrum`` image."""
        from closedloop.plotting.loops import draw_spectra

        self.writer.add_figure("spectrum", draw_spectra(record.coupled_eigenvalues,
                                                        record.recurrent_eigenvalues,
                                                        f"epoch {record.epoch}"),
                               record.epoch, close=True)
        self.drawn = record.epoch
