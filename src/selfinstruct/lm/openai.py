"""OpenAI-compatible HTTP backend (OpenAI, vLLM, llama.cpp's server, Ollama, TGI), over aiohttp.

A plain HTTP client rather than the `openai` package: the engine keeps dozens of requests in flight, and the
official client costs several times more CPU per request than the request itself is worth on a small machine.
The protocol surface used is small: POST /completions or /chat/completions, and the error statuses.

The API key comes from OPENAI_API_KEY only; it is never stored in the run directory.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import aiohttp

from selfinstruct.config import Sampling
from selfinstruct.lm import BackendError
from selfinstruct.lmtypes import Completion, Prompt, fold_system

DEFAULT_BASE_URL = "https://api.openai.com/v1"
OVERLOADED = (429, 503, 529)  # the server asks for less: the engine lowers this replica's concurrency
REJECTED = (400, 413, 422)  # the request itself is refused: sending it again fails the same way
# How OpenAI, vLLM, llama.cpp's server and TGI say that prompt + max_tokens exceed the model's context.
_CONTEXT_OVERFLOW = re.compile(
    r"context length|context window|context_length_exceeded|reduce (?:the length|your prompt)|too many tokens|"
    r"exceeds? the (?:model'?s? )?(?:maximum )?context|must be <= .*max_model_len|max_total_tokens",
    re.IGNORECASE,
)


class OpenAILM:
    def __init__(
        self,
        model: str | None,
        base_url: str | None = None,
        api: str = "completions",
        timeout: float = 120.0,
        structured: str = "off",
    ) -> None:
        if not model:
            raise BackendError("the openai backend needs --model NAME (the model the endpoint serves)", retryable=False)
        # Local servers (llama.cpp, vLLM) accept any key; api.openai.com needs one.
        key = os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
        if key is None:
            raise BackendError("set OPENAI_API_KEY (or pass --base-url for a local server)", retryable=False)
        self.model_id = model
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._chat = api == "chat"  # a text prompt is sent to the chat API as one user message
        # Learned from the endpoint's first refusal and then applied to every request: it refuses the system role
        # (folded into the first user turn), or wants max_completion_tokens instead of max_tokens (OpenAI's
        # reasoning models).
        self.fold_system = False
        self.max_tokens_key = "max_tokens"
        # Structured output (response_format with the request's JSON schema): under "auto", an endpoint that refuses
        # it is then answered in text; under "json_schema" the refusal stands.
        self.structured = structured
        self.json_schema = structured != "off"
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created inside the running event loop; no connection cap here (the engine caps requests in flight).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=self._timeout, headers=self._headers
            )
        return self._session

    def _body(self, prompt: Prompt, sampling: Sampling, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_id,
            self.max_tokens_key: sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "frequency_penalty": sampling.frequency_penalty,
            "presence_penalty": sampling.presence_penalty,
            "seed": seed,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)  # at most 4 at OpenAI: the config refuses more (config.OPENAI_MAX_STOP)
        if isinstance(prompt, list):
            body["messages"] = fold_system(prompt) if self.fold_system else prompt
            if sampling.json_schema and self.json_schema:
                schema = json.loads(sampling.json_schema)
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": True},
                }
        elif self._chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def _adapt(self, message: str) -> bool:
        """Learn from a refusal that names a feature this endpoint lacks; True when the request is worth sending
        again adapted."""
        lowered = message.lower()
        if not self.fold_system and "system" in lowered and ("role" in lowered or "message" in lowered):
            self.fold_system = True
            return True
        if self.max_tokens_key == "max_tokens" and "max_completion_tokens" in lowered:
            self.max_tokens_key = "max_completion_tokens"
            return True
        if self.json_schema and self.structured == "auto" and ("response_format" in lowered or "schema" in lowered):
            self.json_schema = False
            return True
        return False

    async def complete(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        while True:
            sent_as = (self.fold_system, self.max_tokens_key, self.json_schema)
            try:
                return await self._post(prompt, sampling, seed)
            except BackendError as e:
                # Sent again when this refusal teaches something, or when a request in flight at the same time
                # already taught it.
                learned = sent_as != (self.fold_system, self.max_tokens_key, self.json_schema)
                if not (e.rejected and (self._adapt(str(e)) or learned)):
                    raise

    async def _post(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        chat = isinstance(prompt, list) or self._chat
        url = f"{self.base_url}/{'chat/completions' if chat else 'completions'}"
        try:
            async with self._client().post(url, data=json.dumps(self._body(prompt, sampling, seed))) as resp:
                raw = await resp.read()
                status, retry_after = resp.status, _retry_after(resp.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as e:
            raise BackendError(f"cannot connect to {self.base_url} ({e.os_error.strerror or e.os_error})") from e
        except TimeoutError as e:
            raise BackendError(f"no answer from {self.base_url} within {self._timeout.total:g} s") from e
        except (aiohttp.ClientError, OSError) as e:  # reset, closed mid-answer
            raise BackendError(f"{type(e).__name__}: {e}".rstrip(": ")) from e
        if status != 200:
            message = _error_message(raw)
            retryable = status in (408, 409) or status == 429 or status >= 500
            overflow = status in REJECTED and _CONTEXT_OVERFLOW.search(message) is not None
            raise BackendError(
                f"HTTP {status}: {message}",
                retryable,
                retry_after,
                overloaded=status in OVERLOADED,
                rejected=status in REJECTED,
                context_overflow=overflow,
                fits=_room_for_completion(message) if overflow else None,
            )
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
            usage = data.get("usage") or {}
            return Completion(
                text=text or "",
                finish_reason=choice.get("finish_reason") or "stop",
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        except (ValueError, KeyError, IndexError, TypeError) as e:  # not the JSON it claims to be
            raise BackendError(f"invalid response: {type(e).__name__}: {e}") from e

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw[:200].decode("utf-8", "replace") or "(empty body)"


def _room_for_completion(message: str) -> int | None:
    """The max_tokens that fits, from "maximum context length is 4097 tokens ... (3500 in your prompt ...)"."""
    context = re.search(r"(?:context length|context window)(?: of| is)? (\d+)", message)
    prompt = re.search(r"(\d+) (?:tokens )?in (?:your prompt|the messages|the prompt)", message)
    if context and prompt:
        room = int(context.group(1)) - int(prompt.group(1))
        return room if room > 0 else None
    return None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare from inference servers; our own backoff applies
        return None
