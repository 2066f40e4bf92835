"""OpenAI-compatible HTTP backend (OpenAI, vLLM, llama.cpp's server, Ollama, TGI) via the `openai` client.

The API key comes from OPENAI_API_KEY only; it is never stored in the run directory.
"""

from __future__ import annotations

import os

from selfinstruct.config import Sampling
from selfinstruct.lm import BackendError, Completion


class OpenAILM:
    def __init__(
        self, model: str | None, base_url: str | None = None, api: str = "completions", timeout: float = 120.0
    ) -> None:
        import openai

        if not model:
            raise BackendError("the openai backend needs --model NAME (the model the endpoint serves)", retryable=False)
        # Local servers (llama.cpp, vLLM) accept any key; the client insists on one being set.
        key = os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
        if key is None:
            raise BackendError("set OPENAI_API_KEY (or pass --base-url for a local server)", retryable=False)
        # Retries are the engine's job (it journals each attempt), so the client must not retry on its own.
        self._client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
        self._openai = openai
        self._api = api
        self.model_id = model

    def complete(self, prompt: str, sampling: Sampling, seed: int) -> Completion:
        args = dict(
            model=self.model_id,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            stop=list(sampling.stop)[:4] or None,  # OpenAI accepts at most 4 stop sequences
            seed=seed,
        )
        try:
            if self._api == "chat":
                resp = self._client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **args)
                choice = resp.choices[0]
                text = choice.message.content or ""
            else:
                resp = self._client.completions.create(prompt=prompt, **args)
                choice = resp.choices[0]
                text = choice.text or ""
        except self._openai.APIStatusError as e:
            retryable = e.status_code in (408, 409, 429) or e.status_code >= 500
            raise BackendError(f"HTTP {e.status_code}: {e.message}", retryable, _retry_after(e.response)) from e
        except self._openai.APIConnectionError as e:  # refused, reset, timed out
            raise BackendError(f"{type(e).__name__}: {e}") from e
        except Exception as e:  # a body that is not the JSON it claims to be, no choices, other protocol garbage
            raise BackendError(f"invalid response: {type(e).__name__}: {e}") from e
        usage = resp.usage
        return Completion(
            text=text,
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )


def _retry_after(response: object) -> float | None:
    value = getattr(response, "headers", {}).get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare from inference servers; our own backoff applies
        return None
