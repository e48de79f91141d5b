"""Running one onnxruntime session repeatedly on fixed feeds and timing each run."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

_FATAL_ONLY = 4  # a failed run raises with the same message that onnxruntime would also log


class TimedSession:
    """A session with its feeds bound, timed one run at a time.

    Without IO binding every run passes numpy feeds and receives numpy outputs, so the time includes
    copies to and from the device. With IO binding the inputs are copied to the device once and the
    outputs stay there; :meth:`outputs` copies them back only when asked.

    Args:
        session: an onnxruntime InferenceSession.
        feeds: input name -> array.
        io_binding: bind inputs and outputs to ``device`` instead of passing numpy arrays.
        device: ``"cuda"`` or ``"cpu"``: where bound inputs and outputs live.
        device_id: the device index for ``"cuda"``.
    """

    def __init__(
        self,
        session,
        feeds: Mapping[str, np.ndarray],
        *,
        io_binding: bool = False,
        device: str = "cpu",
        device_id: int = 0,
    ) -> None:
        import onnxruntime as ort

        self._session = session
        self._feeds = dict(feeds)
        self._options = ort.RunOptions()
        self._options.log_severity_level = _FATAL_ONLY
        self._names = [o.name for o in session.get_outputs()]
        self._last: list | None = None
        self._binding = None
        self._bound: list = []  # OrtValues on the device; kept alive as long as the binding
        if io_binding:
            self._binding, self._bound = _bind(session, self._feeds, self._names, device, device_id)

    def run(self, budget: float | None = None) -> float:
        """Run once and return the elapsed wall-clock time in milliseconds.

        Args:
            budget: seconds after which onnxruntime stops the run (RunBudgetExceeded); None: no limit.
        """
        if budget is None:
            return self._timed_run()
        import threading

        from onnxgraph.runtime.sessions import RUN_BUDGET_ENV, RunBudgetExceeded

        timer = threading.Timer(budget, setattr, (self._options, "terminate", True))
        timer.daemon = True
        timer.start()
        try:
            return self._timed_run()
        except Exception as exc:
            if self._options.terminate:
                raise RunBudgetExceeded(
                    f"did not finish within the {budget:g} s run budget ({RUN_BUDGET_ENV}=SECONDS sets another)"
                ) from exc
            raise
        finally:
            timer.cancel()
            self._options.terminate = False

    def _timed_run(self) -> float:
        if self._binding is not None:
            start = time.perf_counter_ns()
            self._session.run_with_iobinding(self._binding, self._options)
            elapsed = time.perf_counter_ns() - start
        else:
            start = time.perf_counter_ns()
            self._last = self._session.run(None, self._feeds, self._options)
            elapsed = time.perf_counter_ns() - start
        return elapsed / 1e6

    def outputs(self) -> dict[str, np.ndarray]:
        """The last run's outputs as numpy arrays (copied from the device when bound there)."""
        if self._binding is not None:
            return dict(zip(self._names, self._binding.copy_outputs_to_cpu()))
        if self._last is None:
            raise RuntimeError("outputs() before the first run()")
        return dict(zip(self._names, self._last))


def _bind(session, feeds: Mapping[str, np.ndarray], output_names: list[str], device: str, device_id: int):
    import onnxruntime as ort

    binding = session.io_binding()
    values = []
    for name, array in feeds.items():
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, device_id)
        binding.bind_ortvalue_input(name, value)
        values.append(value)
    for name in output_names:
        binding.bind_output(name, device, device_id)
    return binding, values
