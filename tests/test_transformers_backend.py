"""The transformers backend on a tiny random Llama built in-process (no downloads): batching, padding, stops.

Skipped when the optional extra is not installed (pip install 'selfinstruct[transformers]').
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from conftest import TINY_WORDS, save_tiny_llama  # noqa: E402

from selfinstruct.config import Sampling  # noqa: E402
from selfinstruct.lm import BackendError  # noqa: E402
from selfinstruct.lm.transformers import TransformersLM  # noqa: E402

WORDS = TINY_WORDS
GREEDY = Sampling(temperature=0.0, max_tokens=12)
PROMPTS = ["ba", "ka le mi no pu", "sa te", "da fe gi ko lu ma ne pi ro su ta"]  # different lengths: padding


def _save_model(path: Path, eos_from: int | None = None) -> None:
    def adjust(llama) -> None:
        # Special tokens get logit 0: with random logits for the 65 words, greedy practically never picks them,
        # so greedy lengths are known. `eos_from`: EOS just outscores that word, so it ends where the word was.
        llama.lm_head.weight[:3] = 0.0
        if eos_from is not None:
            llama.lm_head.weight[1] = 1.01 * llama.lm_head.weight[eos_from]

    save_tiny_llama(path, adjust=adjust)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-llama")
    _save_model(path)
    return path


@pytest.fixture(scope="module")
def lm(model_dir: Path):
    backend = TransformersLM(str(model_dir), batch_size=4, threads=1)
    yield backend
    asyncio.run(backend.aclose())


def _one_by_one(lm: TransformersLM, prompts: list[str], sampling: Sampling, seeds: list[int]):
    async def go():
        return [await lm.complete(p, sampling, s) for p, s in zip(prompts, seeds, strict=True)]

    return asyncio.run(go())


def _together(lm: TransformersLM, prompts: list[str], sampling: Sampling, seeds: list[int]):
    async def go():
        return await asyncio.gather(*(lm.complete(p, sampling, s) for p, s in zip(prompts, seeds, strict=True)))

    return asyncio.run(go())


def test_greedy_is_deterministic_and_the_same_alone_or_batched(lm: TransformersLM, model_dir: Path) -> None:
    seeds = [0] * len(PROMPTS)
    alone = _one_by_one(lm, PROMPTS, GREEDY, seeds)
    assert _one_by_one(lm, PROMPTS, GREEDY, seeds) == alone
    assert _together(lm, PROMPTS, GREEDY, seeds) == alone
    assert lm.model_id == f"transformers:{model_dir.name}"
    for prompt, c in zip(PROMPTS, alone, strict=True):
        assert c.finish_reason == "length"
        assert c.completion_tokens == GREEDY.max_tokens == len(c.text.split())
        assert c.prompt_tokens == len(prompt.split())
        assert set(c.text.split()) <= set(WORDS)


def test_many_concurrent_requests_with_mixed_sampling_all_complete(lm: TransformersLM) -> None:
    hot = Sampling(temperature=1.0, top_p=0.9, max_tokens=5)
    jobs = [(PROMPTS[i % 4], GREEDY if i % 3 else hot, i) for i in range(24)]

    async def go():
        return await asyncio.gather(*(lm.complete(p, s, seed) for p, s, seed in jobs))

    results = asyncio.run(go())
    assert all(c.completion_tokens <= s.max_tokens for (_, s, _), c in zip(jobs, results, strict=True))
    greedy = {p: c for (p, s, _), c in zip(jobs, results, strict=True) if s == GREEDY}
    assert greedy == dict(zip(PROMPTS, _one_by_one(lm, PROMPTS, GREEDY, [0] * 4), strict=True))


def test_sampling_depends_on_the_seed_not_on_the_batch(lm: TransformersLM) -> None:
    hot = Sampling(temperature=1.0, top_p=1.0, max_tokens=10)
    prompts, seeds = [PROMPTS[1]] * 4, [1, 2, 3, 4]
    batched = _together(lm, prompts, hot, seeds)
    assert _one_by_one(lm, prompts, hot, seeds) == batched
    assert len({c.text for c in batched}) == 4  # near-uniform random logits: the seeds all differ
    # top_p 0 keeps only the most likely token: sampling becomes greedy.
    assert _together(lm, PROMPTS, Sampling(temperature=1.0, top_p=0.0, max_tokens=12), [5, 6, 7, 8]) == (
        _one_by_one(lm, PROMPTS, GREEDY, [0] * 4)
    )


def test_presence_penalty_counts_generated_tokens_only(lm: TransformersLM) -> None:
    (plain,) = _one_by_one(lm, PROMPTS[:1], Sampling(max_tokens=40), [0])
    assert len(set(plain.text.split())) < 40  # without a penalty the random model repeats itself
    (penalised,) = _one_by_one(lm, PROMPTS[:1], Sampling(max_tokens=40, presence_penalty=100.0), [0])
    assert len(set(penalised.text.split())) == 40
    assert penalised.text.split()[0] == plain.text.split()[0]  # the prompt's tokens are not penalised


def test_stop_string_cuts_the_text(lm: TransformersLM) -> None:
    (full,) = _one_by_one(lm, PROMPTS[2:3], GREEDY, [0])
    stop = " " + full.text.split()[4]
    cut = full.text.index(stop)
    sampling = Sampling(max_tokens=12, stop=("never seen", stop))
    (alone,) = _one_by_one(lm, PROMPTS[2:3], sampling, [0])
    assert (alone.text, alone.finish_reason) == (full.text[:cut], "stop")
    assert alone.completion_tokens == len(full.text[: cut + len(stop)].split())
    # Batched with prompts that do not stop: each row stops on its own.
    batched = _together(lm, PROMPTS, sampling, [0] * 4)
    assert batched[2] == alone


def test_max_tokens_gives_length(lm: TransformersLM) -> None:
    (c,) = _one_by_one(lm, ["ba"], Sampling(max_tokens=3), [0])
    assert (c.finish_reason, c.completion_tokens) == ("length", 3)


def test_eos_ends_with_stop(tmp_path: Path, lm: TransformersLM) -> None:
    (full,) = _one_by_one(lm, ["ba"], GREEDY, [0])
    words = full.text.split()
    _save_model(tmp_path, eos_from=WORDS.index(words[3]) + 3)
    eos_lm = TransformersLM(str(tmp_path))
    try:
        (c,) = _one_by_one(eos_lm, ["ba"], GREEDY, [0])
    finally:
        asyncio.run(eos_lm.aclose())
    first = words.index(words[3])
    assert (c.text.split(), c.finish_reason, c.completion_tokens) == (words[:first], "stop", first)


def test_missing_model_is_not_retryable(tmp_path: Path) -> None:
    for path in (tmp_path / "nope", tmp_path):  # absent; a directory without config.json
        with pytest.raises(BackendError) as e:
            TransformersLM(str(path))
        assert not e.value.retryable
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="neither"):
        TransformersLM(str(bad))


def test_aclose_ends_the_thread_and_refuses_new_requests(model_dir: Path) -> None:
    lm = TransformersLM(str(model_dir))
    thread = lm._thread
    assert thread.is_alive()

    async def go():
        # A long request in flight when closing fails instead of hanging.
        pending = asyncio.ensure_future(lm.complete("ba", Sampling(max_tokens=200), 0))
        await asyncio.sleep(0.05)
        await lm.aclose()
        with pytest.raises(BackendError):
            await pending
        with pytest.raises(BackendError):
            await lm.complete("ba", GREEDY, 0)

    asyncio.run(go())
    assert not thread.is_alive()
    assert thread not in threading.enumerate()


def test_a_failing_batch_fails_its_requests_and_a_crash_fails_everything(model_dir: Path) -> None:
    lm = TransformersLM(str(model_dir), batch_size=2)

    def broken(batch):
        raise RuntimeError("out of memory")

    async def go():
        good = await lm.complete("ba", GREEDY, 0)
        lm._generate = broken  # type: ignore[method-assign]
        failed = await asyncio.gather(*(lm.complete(p, GREEDY, 0) for p in PROMPTS), return_exceptions=True)
        assert all(isinstance(e, BackendError) and e.retryable for e in failed)
        del lm._generate  # the worker carried on: it serves the next request
        assert await lm.complete("ba", GREEDY, 0) == good

        def crash(pending):
            raise RuntimeError("bug")

        lm._take_batch = crash  # type: ignore[method-assign]
        failed = await asyncio.gather(*(lm.complete(p, GREEDY, 0) for p in PROMPTS), return_exceptions=True)
        assert all(isinstance(e, BackendError) and not e.retryable for e in failed)
        with pytest.raises(BackendError, match="closed"):
            await lm.complete("ba", GREEDY, 0)
        await lm.aclose()

    asyncio.run(go())
    assert not lm._thread.is_alive()


def test_chat_messages_use_the_tokenizer_template_and_fold_a_refused_system_role(tmp_path: Path) -> None:
    """A template that raises on the system role (as Gemma's does) gets it folded into the first user turn, once."""
    template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}{{ m['role'] }} {{ m['content'] }} </s> {% endfor %}{% if add_generation_prompt %}assistant "
        "{% endif %}"
    )
    path = tmp_path / "gemma-like"
    save_tiny_llama(path, chat_template=template)
    backend = TransformersLM(str(path), batch_size=2, threads=1)
    try:
        words = " ".join(TINY_WORDS[:3])
        messages = [{"role": "system", "content": TINY_WORDS[5]}, {"role": "user", "content": words}]
        assert backend.apply_chat_template(messages) == f"user {TINY_WORDS[5]}\n\n{words} </s> assistant "
        assert backend.fold_system
        answer = asyncio.run(backend.complete(messages, Sampling(max_tokens=4), 1))
        assert (
            answer.completion_tokens >= 1 and answer.prompt_tokens == len(f"user {TINY_WORDS[5]} {words}".split()) + 2
        )
    finally:
        asyncio.run(backend.aclose())
