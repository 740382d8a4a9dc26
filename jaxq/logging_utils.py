"""Logging a run where its users already look: TensorBoard, through ``jaxq.train``'s
``callback``.

``jaxq.train(config, callback=fn)`` calls ``fn(chunk, metrics)`` on the host after every
chunk; :class:`TensorBoardLogger` is such a ``fn``. jaxq does not depend on any logger:
tensorboardX is an optional extra (``pip install 'jaxq[tensorboard]'``), imported only
when a logger is made, and Weights & Biases, MLflow and the like need only a few lines of
callback (see the README).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

TENSORBOARD_EXTRA = "pip install 'jaxq[tensorboard]'"


def scalar_tag(name: str) -> str:
    """The TensorBoard tag of a metric: greedy evaluations under ``eval/`` (``eval_return``
    -> ``eval/return``), the rest under ``train/``, so TensorBoard groups them in two
    sections."""
    if name.startswith("eval_"):
        return "eval/" + name[len("eval_"):]
    return "train/" + name


def check_logdir(path: str, flag: str = "logdir") -> None:
    """Raise ``ValueError`` (naming ``flag``) where ``path`` cannot be used as a log
    directory: it exists and is not a directory, is not writable, or cannot be created.
    Writes nothing, so a run can be refused before anything starts."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{flag} must be a directory path, got {path!r}")
    full = os.path.abspath(path)
    if os.path.exists(full):
        if not os.path.isdir(full):
            raise ValueError(f"{flag} {str(path)!r} exists and is not a directory")
        if not os.access(full, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {str(path)!r}: permission denied (the directory is not "
                             "writable)")
        return
    parent = os.path.dirname(full)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {str(path)!r}: cannot create it, {parent!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {str(path)!r}: cannot create it, permission denied in "
                         f"{parent!r}")


class TensorBoardLogger:
    """A ``jaxq.train`` callback writing every chunk's metrics as TensorBoard scalars.

    The global step is ``env_steps`` (environment steps summed over all environments), so
    runs with different ``num_envs`` or chunk counts line up on one axis. Non-finite
    values are left out rather than logged: ``eval_*`` is NaN in chunks without an
    evaluation, ``success_rate`` in environments without a notion of success, ``q_error``
    without Q*. Use as a context manager, or call :meth:`close`, so the events are flushed.

    Raises ``ValueError`` for a log directory that cannot be written (before creating
    anything) and ``ImportError`` naming the extra when tensorboardX is not installed.
    """

    def __init__(self, logdir: str, flush_secs: int = 10) -> None:
        check_logdir(logdir)
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError(
                f"TensorBoard logging needs tensorboardX: {TENSORBOARD_EXTRA}") from None
        self.logdir = str(logdir)
        self._writer = SummaryWriter(logdir=self.logdir, flush_secs=flush_secs)

    def __call__(self, chunk: int, metrics: Mapping[str, Any]) -> None:
        step = int(metrics["env_steps"])
        for name, value in metrics.items():
            if name == "env_steps" or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(scalar_tag(name), value, global_step=step)
        self._writer.add_scalar("train/chunk", chunk, global_step=step)

    def close(self) -> None:
        """Flush and close the events file."""
        self._writer.close()

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
