"""One case → one record, with the status policy every caller shares (the pytest plugin and the
benchmarks write identical records):

- ``ok``: trained and measured (``Engine.distill``);
- ``n/a``: the method is undefined for the pair (``NotApplicable``), the reason recorded;
- ``diverged``: the loss became non-finite (``Diverged``), the epoch and last finite loss
  recorded;
- ``error``: anything else (CUDA out of memory included), the message recorded; the exception
  is re-raised after the record is stored, its frames cleared so that the failed case's models
  and tensors do not hold memory the next case needs.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import torch

from kdbench import results
from kdbench.losses import NotApplicable
from kdbench.run.engine import Engine
from kdbench.run.loop import Diverged
from kdbench.spec import RunSpec

Store = Callable[[dict[str, Any]], None]


def run(engine: Engine, spec: RunSpec, env: dict[str, Any], store: Store) -> dict[str, Any]:
    """Run ``spec``, ``store`` its record and return it; an ``error`` record is stored and its
    exception re-raised."""
    try:
        outcome = engine.distill(spec)
    except NotApplicable as exc:
        record = results.make_record(spec, "n/a", {}, env, reason=str(exc))
    except Diverged as exc:
        record = results.make_record(
            spec,
            "diverged",
            {"diverged_epoch": exc.epoch, "last_finite_loss": exc.last_finite_loss},
            env,
        )
    except Exception as exc:
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        traceback.clear_frames(exc.__traceback__)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        store(results.make_record(spec, "error", {}, env, error=message))
        raise
    else:
        record = results.make_record(spec, "ok", outcome.metrics, env, **outcome.info)
    store(record)
    return record
