"""policy.device: where the local policy runs. The GPU half is checked on a GPU machine by
bench/gpu.py (CPU vs GPU scores and LoRA gradients); here, what a CPU-only torch says."""

from __future__ import annotations

import pytest
import torch

from jerp.policy.model import DeviceError, pick_device, pick_dtype


def test_auto_and_cpu_resolve_to_a_device_torch_has():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(DeviceError) as e:
        pick_device("cuda:0")
    msg = str(e.value)
    assert "policy.device = 'cuda:0'" in msg and "no CUDA GPU" in msg and "auto, cpu" in msg


def test_auto_dtype_on_the_cpu_follows_its_bf16_support():
    from jerp.policy.model import cpu_has_bf16

    assert pick_dtype("auto", "cpu") == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
    assert pick_dtype("float32", "cuda") == torch.float32


def test_a_cpu_policy_is_on_the_cpu(policy_fp32):
    assert policy_fp32.model.device.type == "cpu"
