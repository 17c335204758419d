"""A linear layer that always computes in float32 or wider, for losses that need it."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Float32Linear(nn.Linear):
    """``nn.Linear`` computed outside autocast in at least float32 (float64 stays float64),
    so the auxiliary heads' losses (CTC, bag of words) are safe under mixed precision."""

    def forward(self, inputs: Tensor) -> Tensor:
        """``(..., in_features)`` -> ``(..., out_features)`` in at least float32."""
        dtype = torch.promote_types(self.weight.dtype, torch.float32)
        with torch.autocast(inputs.device.type, enabled=False):
            return F.linear(inputs.to(dtype), self.weight.to(dtype), self.bias.to(dtype))
