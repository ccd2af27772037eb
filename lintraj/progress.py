"""Progress meters for compiled runs, and the protocol a meter follows.

A compiled loop cannot report while it runs, so every run is cut into segments of the same
compiled program, each about half a second of work (the records do not depend on where the run
was cut). Between segments the run reports to its meter and Python gets control back, so an
interrupt (Ctrl-C, a notebook's stop button) takes effect within a segment, with or without a
meter. ``progress=`` of every run function takes ``True`` (a tqdm bar), ``False`` or a meter of
your own: any object with the three methods of :class:`Meter`, as diffrax's ``progress_meter``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Meter", "Progress", "meter"]


@runtime_checkable
class Meter(Protocol):
  """What a run calls on its ``progress=`` object.

  ``start(total, lanes=..., desc=...)`` once, with the steps the run will take in all (the sum
  over the chunks of a batch) and the number of networks (None for a single run);
  ``update(done, stopped=..., diverged=...)`` after every segment, with the steps done so far
  and, for a batch, how many lanes have stopped or diverged; ``close()`` once at the end, also
  when the run fails or is interrupted.
  """

  def start(self, total: int, *, lanes: int | None = None, desc: str = "") -> None: ...

  def update(
    self, done: int, *, stopped: int | None = None, diverged: int | None = None
  ) -> None: ...

  def close(self) -> None: ...


class Progress:
  r"""A ``tqdm.auto`` bar (renders in Jupyter and terminals): the meter of ``progress=True``.

  Args:
    **tqdm_kwargs: passed to ``tqdm.auto.tqdm`` (e.g. ``file=``, ``disable=``, ``desc=``).

  Example:
    >>> import io
    >>> bar = Progress(file=io.StringIO())
    >>> bar.start(100, desc="demo"), bar.update(100), bar.close()
    (None, None, None)
  """

  def __init__(self, **tqdm_kwargs):
    try:
      from tqdm.auto import tqdm
    except ImportError:
      raise ValueError(
        "progress=True needs tqdm: pip install tqdm (or pip install 'lintraj[progress]')."
      ) from None
    self._tqdm, self._kwargs = tqdm, tqdm_kwargs
    self._bar, self._lanes, self._done = None, None, 0

  def start(self, total: int, *, lanes: int | None = None, desc: str = ""):
    """Open the bar over ``total`` steps."""
    kwargs = dict(dict(desc=desc, unit="step", dynamic_ncols=True), **self._kwargs)
    self._bar, self._lanes, self._done = self._tqdm(total=total, **kwargs), lanes, 0

  def update(self, done: int, *, stopped: int | None = None, diverged: int | None = None):
    """The run has taken ``done`` steps in all."""
    if stopped is not None:
      self._bar.set_postfix_str(
        f"stopped {stopped}/{self._lanes}, diverged {diverged}", refresh=False
      )
    self._bar.update(done - self._done)
    self._done = done

  def close(self):
    """Close the bar."""
    if self._bar is not None:
      self._bar.close()


def meter(progress) -> Meter | None:
  """The meter of a run's ``progress=`` argument: a :class:`Progress` for True, None for False,
  the object itself if it has ``start``, ``update`` and ``close``; else ValueError.

  Example:
    >>> meter(False) is None, type(meter(True)).__name__
    (True, 'Progress')
  """
  if progress is True:
    return Progress()
  if progress is False or progress is None:
    return None
  if isinstance(progress, Meter):
    return progress
  raise ValueError(
    "progress must be True, False, or a meter with start(total, lanes=, desc=), "
    f"update(done, stopped=, diverged=) and close() methods; got {progress!r}."
  )
