"""The one progress bar of the package (download, decode, training): ``tqdm.auto``.

A text bar on a terminal and a widget in a notebook (with ipywidgets installed); the
caller decides whether it is shown, the library never draws one unasked.
"""

from __future__ import annotations

import warnings

from tqdm import TqdmWarning

with warnings.catch_warnings():
    # tqdm.auto in a notebook without ipywidgets warns "IProgress not found" and uses the text bar: fine here.
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm

# No idle monitor thread: it only tunes redraw intervals, and a live thread would make
# decode._mp_context pick the slower "spawn" start method for the decoding workers.
tqdm.monitor_interval = 0


def bar(total: float | None, desc: str, unit: str = "it", enabled: bool = True, initial: float = 0,
        unit_scale: bool = False) -> tqdm:
    """A progress bar over ``total`` units (None: unknown total), drawn on stderr.

    Args:
      total: units of work (bytes, images, steps) or None.
      desc: text in front of the bar.
      unit: name of one unit.
      enabled: False gives a bar that draws nothing (same interface).
      initial: units already done (a resumed download or training run).
      unit_scale: show 1.2M instead of 1200000 (bytes).

    Returns:
      A ``tqdm`` bar: ``update(n)``, ``set_postfix(...)``, ``close()`` (or use it as a context manager).
    """
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=not enabled, unit_scale=unit_scale,
                dynamic_ncols=True, leave=True)
