"""Progress bars for compiled runs.

A compiled loop cannot report while it runs, so a run with a progress bar is cut into segments
that all execute the same compiled program (the records are identical with and without the bar)
and the bar advances between them. Segments are sized from the measured speed to last about
``interval`` seconds each, so the round trips to the host cost a small fraction of the run.
"""

from __future__ import annotations

import time

__all__ = ["Progress"]


class Progress:
  r"""A ``tqdm.auto`` bar (renders in Jupyter and terminals) over the steps of one or more runs.

  Args:
    steps: steps of one run; the bar's total is ``steps * runs``.
    runs: how many runs one after another (the chunks of a batch).
    lanes: networks in the batch (shown as "stopped s/lanes"), or None for a single run.
    desc: the bar's label.
    interval: target seconds per segment of the compiled loop.
    **tqdm_kwargs: passed to ``tqdm.auto.tqdm`` (e.g. ``file=``, ``disable=``).

  Example:
    >>> import io
    >>> bar = Progress(100, desc="demo", file=io.StringIO())
    >>> bar.until(0, 11), bar.update(100), bar.close()
    (1, None, None)
  """

  def __init__(self, steps: int, *, runs: int = 1, lanes: int | None = None, desc: str | None = None,
               interval: float = 0.5, **tqdm_kwargs):
    try:
      from tqdm.auto import tqdm
    except ImportError:
      raise ValueError("progress=True needs tqdm: pip install tqdm (or pip install 'lintraj[progress]')."
                       ) from None
    self._bar = tqdm(total=steps * runs, desc=desc, unit="step", dynamic_ncols=True, **tqdm_kwargs)
    self._steps, self._lanes, self._interval = steps, lanes, interval
    self._run, self._position = 0, 0
    self._started, self._from_block, self._rate = None, 0, None

  def begin(self, run: int):
    """Start run ``run`` (0-based) of a multi-run bar."""
    self._run = run

  def until(self, block: int, limit: int) -> int:
    """Where the next segment should end: about ``interval`` seconds of work, at most ``limit``."""
    now = time.perf_counter()
    if self._started is not None and block > self._from_block:
      self._rate = (block - self._from_block) / max(now - self._started, 1e-9)
    size = 1 if self._rate is None else max(1, int(self._rate * self._interval))
    self._started, self._from_block = now, block
    return min(limit, block + size)

  def update(self, step: int, stopped: int | None = None, diverged: int | None = None):
    """The run has reached ``step``; ``stopped``/``diverged`` lanes of a batch so far."""
    position = self._run * self._steps + step
    if stopped is not None:
      self._bar.set_postfix_str(f"stopped {stopped}/{self._lanes}, diverged {diverged}", refresh=False)
    self._bar.update(position - self._position)
    self._position = position

  def close(self):
    """Close the bar."""
    self._bar.close()
