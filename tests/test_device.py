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


def test_auto_dtype_follows_the_devices_bf16_support(monkeypatch):
    from jerp.policy import model

    for native, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(model, "cpu_has_bf16", lambda native=native: native)
        assert pick_dtype("auto", "cpu") == want
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # before Ampere
    assert pick_dtype("auto", "cuda:0") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert pick_dtype("auto", "cuda:0") == torch.bfloat16
    # a named dtype is used as it is, whatever the device supports
    assert pick_dtype("float32", "cuda") == torch.float32
    assert pick_dtype("bfloat16", "cpu") == torch.bfloat16


def test_cpu_bf16_support_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    from jerp.policy import model

    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(model, "Path", lambda _: cpuinfo)
    assert not model.cpu_has_bf16()  # no /proc/cpuinfo: assume none
    for flags, native in (("fpu avx2 avx512f", False), ("fpu avx512f avx512_bf16", True),
                          ("fpu amx_tile amx_bf16", True)):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert model.cpu_has_bf16() is native


def test_the_policy_is_moved_to_the_device_asked_for(model_cache):
    """`meta` (a device torch always has, holding no data): load_policy moves the model to
    what policy.device names, not to a default."""
    from jerp.policy.model import load_policy

    policy = load_policy("smollm2", model_cache, dtype="float32", device="meta")
    assert policy.model.device.type == "meta"
    assert {p.device.type for p in policy.model.parameters()} == {"meta"}
