"""lm.weights: the embedded Q4_1 file is converted once to Q8_0 in the cache directory (llama.cpp has fast CPU
matrix kernels for Q8_0, not for Q4_1); a model the user names is loaded as it is unless asked; failures are
clear and leave no half-written file. Speed and fidelity are measured in benchmarks/weights.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from selfinstruct.config import Config, ConfigError, LMConfig, Sampling
from selfinstruct.lm import BackendError
from selfinstruct.lm.llamacpp import LlamaCppLM
from selfinstruct.lm.weights import default_model_path
from selfinstruct.pipeline import Run

pytestmark = pytest.mark.slow


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "selfinstruct" / "models"


def answer(lm: LlamaCppLM) -> str:
    try:
        return asyncio.run(lm.complete("The capital of France is", Sampling(max_tokens=4), 0)).text
    finally:
        asyncio.run(lm.aclose())


def test_the_embedded_file_is_converted_to_q8_0_once(cache: Path) -> None:
    lm = LlamaCppLM(context_size=256, parallel=1)
    assert lm.model_id == "SmolLM2-135M-Instruct.Q4_1.gguf as q8_0" and lm.weights == "q8_0"
    assert "Paris" in answer(lm)
    (converted,) = cache.iterdir()  # and no temporary file left beside it
    assert converted.name.endswith(".q8_0.gguf") and converted.read_bytes()[:4] == b"GGUF"
    made = converted.stat().st_mtime_ns
    answer(LlamaCppLM(context_size=256, parallel=1))
    assert [p.name for p in cache.iterdir()] == [converted.name] and converted.stat().st_mtime_ns == made


def test_a_named_model_is_loaded_as_it_is_unless_asked(cache: Path) -> None:
    path = str(default_model_path())
    lm = LlamaCppLM(path, context_size=256, parallel=1)
    assert lm.model_id == "SmolLM2-135M-Instruct.Q4_1.gguf" and lm.weights == "original"
    answer(lm)
    assert not cache.exists()
    lm = LlamaCppLM(path, context_size=256, parallel=1, weights="f16")
    assert lm.model_id.endswith(" as f16")
    assert "Paris" in answer(lm)
    assert [p.suffixes[-2:] for p in cache.iterdir()] == [[".f16", ".gguf"]]


def test_an_unwritable_cache_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(BackendError, match="XDG_CACHE_HOME.*lm.weights") as error:
        LlamaCppLM(context_size=256, parallel=1)
    assert "cannot write the q8_0 conversion" in str(error.value)


def test_a_file_llama_cpp_cannot_convert_fails_cleanly(tmp_path: Path, cache: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(BackendError, match="could not convert"):
        LlamaCppLM(str(broken), context_size=256, parallel=1, weights="q8_0")
    assert list(cache.iterdir()) == []  # the temporary file is removed


def test_unknown_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="weights must be one of auto, original"):
        LlamaCppLM(context_size=256, parallel=1, weights="q4_0")
    with pytest.raises(ConfigError, match="lm.weights must be one of"):
        Config(lm=LMConfig(weights="q4_0")).validate()


def test_a_run_made_before_lm_weights_keeps_the_original_weights(tmp_path: Path) -> None:
    # Its stored requests were computed with the file as it is: converting now would change every request key.
    run = Run.open(tmp_path / "run")
    assert run.config.lm.weights == "auto"
    stored = json.loads(run.store.get_meta("config") or "{}")
    del stored["lm"]["weights"]
    with run.store.transaction():
        run.store.set_meta("config", json.dumps(stored))
    run.close()
    run = Run.open(tmp_path / "run")
    assert run.config.lm.weights == "original"
    run.close()
