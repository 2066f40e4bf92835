"""The embedded backend with the real model (SmolLM2-135M): several sequences decoded at once, prefix reuse,
stop strings, limits, errors and shutdown. Contexts are small (1024 tokens, 4 sequences) to keep them fast."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest

from selfinstruct.config import Config, Sampling
from selfinstruct.lm import BackendError, Completion
from selfinstruct.lm.llamacpp import LlamaCppLM
from selfinstruct.stages import bootstrap, classify
from selfinstruct.stages.prompts import load as load_prompts

pytestmark = pytest.mark.slow
GREEDY = Sampling(max_tokens=24)
STORY = "Once upon a time, in a small village by the sea, there lived"
INSTRUCTIONS = [
    "Write a short poem about autumn leaves.",
    "Decide whether the given movie review is positive or negative.",
    "Explain how a bicycle works to a child.",
    "Given a sentence, tell whether it is a question or a statement.",
]


@pytest.fixture(scope="module")
def lm() -> Iterator[LlamaCppLM]:
    backend = LlamaCppLM(context_size=1024, parallel=4)
    yield backend
    asyncio.run(backend.aclose())


@pytest.fixture(scope="module")
def cold() -> Iterator[LlamaCppLM]:
    """Never reuses a cached prefix: every prompt is evaluated from scratch."""
    backend = LlamaCppLM(context_size=1024, parallel=4, reuse_prefix=False)
    yield backend
    asyncio.run(backend.aclose())


def run_all(lm: LlamaCppLM, *requests: tuple[str, Sampling]) -> list[Completion]:
    async def main() -> list[Completion]:
        return await asyncio.gather(*(lm.complete(prompt, sampling, 7) for prompt, sampling in requests))

    return asyncio.run(main())


PROMPTS = load_prompts()


def classify_prompt(instruction: str) -> str:
    return classify.encoder(PROMPTS, chat=False)(instruction)


def test_concurrent_classify_and_bootstrap_requests_all_complete(lm: LlamaCppLM) -> None:
    clf = Config().classify.sampling
    boot = dataclasses.replace(Config().bootstrap.sampling, max_tokens=40)
    prompts = [bootstrap.encoder(PROMPTS, chat=False)(INSTRUCTIONS[i:] + INSTRUCTIONS[:i]) for i in range(3)]
    results = run_all(lm, *[(classify_prompt(i), clf) for i in INSTRUCTIONS], *[(p, boot) for p in prompts])
    assert len(results) == 7
    for result in results[:4]:  # the model answers the few-shot pattern
        assert classify.parse_answer(result.text) in ("yes", "no"), result
        assert result.finish_reason == "stop" and 1 <= result.completion_tokens <= 3
    for result in results[4:]:  # a continued numbered list
        assert result.text.strip() and result.completion_tokens >= 1
        assert result.finish_reason in ("stop", "length")
        assert not any(stop in result.text for stop in boot.stop)
    assert all(r.prompt_tokens > 0 for r in results)


# Batching is bit-exact only while every call takes the same attention kernel. llama.cpp's CPU flash attention
# has three: a per-row kernel (f16 accumulators, cells visited in cache order) for calls of fewer than 64 rows, a
# tiled one (f32) from 64 rows, and for a single row over 512 cells or more the per-row kernel split across
# threads. A prompt evaluated in one call with other prompts (tiled) or after a cached prefix (its last tokens
# only, per-row), or a lone completion with a long context, gets logits that differ by up to about 1, so greedy
# text can fork at a near-tie, and so can a classify answer the model is unsure of (5 of the first 100 seed
# instructions at parallel 8 against parallel 1; see docs/embedded-backend.md). What holds, and is tested: short
# requests are bit-exact alone or together, and clear-cut answers do not change.


def test_short_requests_give_the_same_greedy_text_alone_and_batched(cold: LlamaCppLM) -> None:
    prompts = [STORY, "The three primary colors are", "def fibonacci(n):", "My favourite season is"]
    alone = [run_all(cold, (prompt, GREEDY))[0] for prompt in prompts]
    assert run_all(cold, *[(prompt, GREEDY) for prompt in prompts]) == alone
    assert all(a.text and a.completion_tokens >= 1 for a in alone)


def answer_line(completion: Completion) -> str:
    return completion.text.split("\n")[0]


def test_clear_cut_answers_survive_batching_and_prefix_reuse(lm: LlamaCppLM, cold: LlamaCppLM) -> None:
    sampling = Sampling(max_tokens=8)  # greedy and without a stop string: the text goes on past the answer
    prompts = [classify_prompt(i) for i in INSTRUCTIONS[:2]]
    alone = [run_all(cold, (prompt, sampling))[0] for prompt in prompts]  # each from an empty cache
    assert [classify.parse_answer(c.text) for c in alone] == ["no", "yes"]
    # Together, beside a bootstrap prompt, and the few-shot prefix evaluated once: the second waits for the first
    # to evaluate it, then copies it.
    before = lm.stats()["prompt_tokens_reused"]
    together = run_all(
        lm, *[(p, sampling) for p in prompts], (bootstrap.encoder(PROMPTS, chat=False)(INSTRUCTIONS), sampling)
    )
    assert lm.stats()["prompt_tokens_reused"] - before >= 700
    assert [answer_line(c) for c in together[:2]] == [answer_line(c) for c in alone]
    assert [(c.prompt_tokens, c.completion_tokens) for c in together[:2]] == [
        (c.prompt_tokens, c.completion_tokens) for c in alone
    ]
    # A prompt held entirely in a cache still decodes its last token, whose logits give the first answer token.
    assert answer_line(run_all(lm, (prompts[0], sampling))[0]) == answer_line(alone[0])


def test_stop_string_cuts_the_text_before_it(lm: LlamaCppLM) -> None:
    full = run_all(lm, (STORY, Sampling(max_tokens=30)))[0]
    stop = full.text[10:13]  # three characters, possibly spanning two tokens
    cut = run_all(lm, (STORY, Sampling(max_tokens=30, stop=("never appears", stop))))[0]
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop" and cut.completion_tokens < 30


def test_characters_split_across_tokens_are_decoded_whole(lm: LlamaCppLM) -> None:
    prompt = "日本語の単語: 猫、犬、"  # the model answers in CJK characters made of two or three one-byte tokens
    full = run_all(lm, (prompt, Sampling(max_tokens=16)))[0]
    wide = [c for c in full.text if ord(c) > 0x2FFF]
    assert wide and "\ufffd" not in full.text
    cut = run_all(lm, (prompt, Sampling(max_tokens=16, stop=(wide[0],))))[0]
    assert cut.text == full.text[: full.text.index(wide[0])] and cut.finish_reason == "stop"


def test_max_tokens_gives_length(lm: LlamaCppLM) -> None:
    result = run_all(lm, (STORY, Sampling(max_tokens=5)))[0]
    assert result.finish_reason == "length" and result.completion_tokens == 5


def test_prompt_too_long_fails_alone_and_max_tokens_is_clamped() -> None:
    lm = LlamaCppLM(context_size=64, parallel=2)
    long = " ".join(["word"] * 100)  # 100 tokens
    almost = " ".join(["word"] * 60)  # fits, with room for 4 tokens

    async def main() -> list[Completion | BaseException]:
        return await asyncio.gather(
            lm.complete(STORY, GREEDY, 1),
            lm.complete(long, GREEDY, 1),
            lm.complete(almost, Sampling(max_tokens=100), 1),
            return_exceptions=True,
        )

    try:
        ok, error, clamped = asyncio.run(main())
    finally:
        asyncio.run(lm.aclose())
    assert isinstance(error, BackendError) and not error.retryable
    assert str(error) == "prompt of 100 tokens does not fit the context of 64 (raise lm.context_size)"
    assert isinstance(ok, Completion) and ok.completion_tokens == GREEDY.max_tokens
    assert isinstance(clamped, Completion) and clamped.prompt_tokens == 60
    assert clamped.completion_tokens <= 4 and clamped.prompt_tokens + clamped.completion_tokens <= 64


def test_seeded_sampling_is_reproducible(lm: LlamaCppLM) -> None:
    sampling = Sampling(temperature=0.9, top_p=0.9, max_tokens=16, presence_penalty=2.0, frequency_penalty=0.5)

    async def main() -> list[Completion]:
        return await asyncio.gather(*(lm.complete(STORY, sampling, seed) for seed in (1, 1, 2, 3)))

    first, again, *others = asyncio.run(main())
    assert first.text == again.text
    assert any(o.text != first.text for o in others), "other seeds sample other text"


def test_a_cancelled_request_frees_its_sequence() -> None:
    lm = LlamaCppLM(context_size=512, parallel=1)

    async def main() -> Completion:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(lm.complete(STORY, Sampling(max_tokens=400), 1), 0.2)
        return await asyncio.wait_for(lm.complete(STORY, Sampling(max_tokens=3), 1), 30)

    try:
        assert asyncio.run(main()).completion_tokens == 3
    finally:
        asyncio.run(lm.aclose())


def test_aclose_fails_requests_in_flight_and_ends_the_thread() -> None:
    lm = LlamaCppLM(context_size=512, parallel=2)

    async def main() -> BaseException | Completion:
        pending = asyncio.ensure_future(lm.complete(STORY, Sampling(max_tokens=400), 1))
        await asyncio.sleep(0.3)
        await lm.aclose()
        return (await asyncio.gather(pending, return_exceptions=True))[0]

    outcome = asyncio.run(main())
    assert isinstance(outcome, BackendError) and not outcome.retryable
    assert not lm._thread.is_alive()
    with pytest.raises(BackendError, match="closed"):
        asyncio.run(lm.complete(STORY, GREEDY, 1))


def test_a_crash_in_the_worker_fails_every_request() -> None:
    lm = LlamaCppLM(context_size=512, parallel=2)

    def broken_step() -> None:
        raise RuntimeError("boom")

    lm._worker._step = broken_step  # type: ignore[method-assign]

    async def main() -> list[BaseException | Completion]:
        return await asyncio.gather(*(lm.complete(STORY, GREEDY, i) for i in range(3)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, BackendError) and "boom" in str(o) for o in outcomes)
    lm._thread.join(5)
    assert not lm._thread.is_alive()
    with pytest.raises(BackendError, match="boom"):
        asyncio.run(lm.complete(STORY, GREEDY, 1))


# --- chat ---------------------------------------------------------------------------------------------------------


def test_chat_messages_go_through_the_ggufs_chat_template(lm: LlamaCppLM) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a color."}]
    rendered = lm.apply_chat_template(messages)
    # SmolLM2's template is ChatML: each turn in <|im_start|>role ... <|im_end|>, then the assistant's turn opened.
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n"
    )
    (answer,) = run_all(lm, (messages, Sampling(max_tokens=16)))
    assert answer.text.strip() and "<|im_start|>" not in answer.text
    assert answer.prompt_tokens < len(rendered) // 2  # the special tokens were read as tokens, not as text


def test_structured_output_follows_the_schema(lm: LlamaCppLM) -> None:
    """A grammar built from each stage's JSON schema: every answer parses, sampled or greedy."""
    import json

    from selfinstruct.stages.bootstrap import SCHEMA as TASKS
    from selfinstruct.stages.classify import SCHEMA as VERDICT
    from selfinstruct.stages.instances import SCHEMAS

    requests = []
    for schema, question in [
        (TASKS, "Write three short tasks for an assistant."),
        (VERDICT, "Is sorting words into nouns and verbs a classification task?"),
        (SCHEMAS[False], "Give two examples of translating English to French."),
        (SCHEMAS[True], "Give examples of positive and negative movie reviews."),
    ]:
        for temperature in (0.0, 0.7):
            sampling = Sampling(temperature=temperature, top_p=0.9, max_tokens=200, json_schema=schema)
            requests.append(([{"role": "user", "content": question}], sampling))
    for (_, sampling), answer in zip(requests, run_all(lm, *requests), strict=True):
        assert answer.finish_reason == "stop", answer.text  # closed by the grammar, not cut off
        data = json.loads(answer.text)
        assert set(data) == set(json.loads(sampling.json_schema)["required"])
