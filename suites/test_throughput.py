"""Inference speed of every model of the profile, timed by pytest-benchmark.

``--benchmark-json``, ``--benchmark-autosave`` and ``--benchmark-compare`` work as usual;
params, FLOPs and batch size are in each benchmark's ``extra_info``.
"""

import torch

from kdbench.models import build_model, count_params
from kdbench.run import measure
from kdbench.run.loop import EVAL_BATCH


def test_model_throughput(benchmark, kd_model, kd_session):
    data = kd_session.get_engine().data(kd_model)
    device = torch.device(kd_model.device)
    model = build_model(kd_model.model, data.num_classes, data.input_shape).to(device).eval()
    batch_size = min(EVAL_BATCH, data.num_test)
    x = torch.randn(batch_size, *data.input_shape, device=device)
    benchmark.extra_info.update(
        model=kd_model.model,
        dataset=kd_model.dataset,
        device=kd_model.device,
        batch_size=batch_size,
        params=count_params(model),
        flops_per_sample=measure.flops_per_sample(model, data.input_shape, device),
    )

    @torch.inference_mode()
    def forward() -> torch.Tensor:
        out = model(x)
        measure.synchronize(device)
        return out

    logits = benchmark(forward)
    assert logits.shape == (batch_size, data.num_classes)
