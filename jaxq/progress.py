"""Progress of a training run on stderr, one update per compiled chunk.

On a terminal: a bar redrawn in place. Anywhere else (a log file, CI): plain lines, one
per ~10% of the run (every chunk when there are at most 10), so a log holds no
carriage-return frames. Both show one speed: the env steps run in this invocation over
the time spent running them (compilation excluded), the figure the final summary reports.
"""

from __future__ import annotations

import sys
from typing import IO


def _si(x: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


class Progress:
    """``update`` after each chunk; ``close`` at the end. ``tty=None``: ask the stream."""

    def __init__(self, desc: str, num_chunks: int, chunk_steps: int, start_chunk: int = 0,
                 stream: IO[str] | None = None, tty: bool | None = None):
        self.desc, self.num_chunks, self.chunk_steps = desc, num_chunks, chunk_steps
        self.start = start_chunk
        self.stream = sys.stderr if stream is None else stream
        if tty is None:  # a terminal, or a notebook (tqdm draws a widget there)
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty()) or "ipykernel" in sys.modules
        self.tty = tty
        self.run_s = 0.0
        self._bar = None
        self._decile = self._tenth(start_chunk)
        if tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=num_chunks * chunk_steps, initial=start_chunk * chunk_steps, unit="step",
                unit_scale=True, desc=desc, leave=False, file=self.stream,
                # no tqdm rate: the one speed shown is ours (postfix), compile excluded
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                           "[{elapsed}<{remaining}{postfix}]")

    def _tenth(self, chunk: int) -> int:
        return chunk if self.num_chunks <= 10 else (10 * chunk) // self.num_chunks

    def steps_per_s(self, chunk: int) -> float:
        steps = (chunk - self.start) * self.chunk_steps
        return steps / self.run_s if self.run_s > 0 else float("nan")

    def note(self, text: str) -> None:
        """A line of its own (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def update(self, chunk: int, dt: float, mean_return: float) -> None:
        """Chunk number ``chunk`` (1-based) finished after ``dt`` seconds of running."""
        self.run_s += dt
        sps = self.steps_per_s(chunk)
        if self._bar is not None:
            self._bar.update(self.chunk_steps)
            self._bar.set_postfix_str(f"return {mean_return:.3g}, {_si(sps)} steps/s")
            return
        tenth = self._tenth(chunk)
        if tenth == self._decile and chunk != self.num_chunks:
            return
        self._decile = tenth
        print(f"{self.desc}: chunk {chunk}/{self.num_chunks} "
              f"({100 * chunk // self.num_chunks}%), {_si(chunk * self.chunk_steps)} env steps, "
              f"{_si(sps)} steps/s, mean return {mean_return:.3g}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
