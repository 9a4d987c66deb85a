"""Mixed precision and memory format for a case: decided once from its spec and device.

``precision="amp"`` autocasts the forward passes to bf16 where the device supports it (CPU,
Ampere+ GPUs) and to fp16 with a gradient scaler otherwise; the loss is computed in fp32 on the
upcast outputs. Conv nets on CUDA use channels_last; on the CPU where the spec asks for it
(``RunSpec.channels_last``: chosen per model by measurement, benchmarks/cpu_formats.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass
class Accel:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None for fp32
    channels_last: bool
    scaler: torch.amp.GradScaler | None

    @classmethod
    def for_spec(cls, precision: str, device: torch.device, channels_last: bool = False) -> Accel:
        dtype = None
        if precision == "amp":
            bf16 = device.type == "cpu" or torch.cuda.is_bf16_supported()
            dtype = torch.bfloat16 if bf16 else torch.float16
        scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        return cls(device, dtype, channels_last or device.type == "cuda", scaler)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def for_loss(self, t: torch.Tensor) -> torch.Tensor:
        """A tapped output as the loss gets it: in fp32 under AMP (distillation terms such as
        Gram matrices, distances and β-weighted map differences lose too much in bf16)."""
        return t.float() if self.dtype is not None and t.is_floating_point() else t

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()

    def describe(self) -> dict[str, object]:
        return {
            "amp_dtype": str(self.dtype).replace("torch.", "") if self.dtype else "fp32",
            "channels_last": self.channels_last,
        }
