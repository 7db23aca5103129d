"""run.json as a type: the run builds a `RunRecord` (through `harness.run.record.RecordBuilder`, locally and
in the fleet), and `compare`, `report`, `db ingest` and `--resume` read one back.

Readers get attributes (`record.environment.cpu.description()`, `record.models["m"].n_ctx`) instead of
string paths into nested dicts. Loading is tolerant, because run.json files outlive harness versions:

- a key this version does not know is kept in the `extra` dict of the object it was found in and written
  back unchanged by `to_dict()`, so nothing a newer harness (or a tracker) recorded is lost;
- a key that is missing takes its default (None, empty); an older run.json (no `schema_version`, i.e.
  version 1) gets `status` "complete" when it has `finished_at`, else "interrupted" (the runner rewrote it
  after each model, so a crash left no `finished_at`), and `planned_samples` from its config.

Values are taken as written (no coercion), but `RunRecord.load` and `RunRecord.validated` first check
each declared field against its type (`"environment": []`, `"config": 5`, `"command": 123` are refused
with one line naming the field), so that readers -- report, compare, db ingest, --resume -- can trust the
types below. JSON that Python cannot parse safely (a 5000-digit integer, 100 000 nested arrays) is a
one-line error too (`harness.jsonl.loads_document`).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from harness.errors import HarnessError
from harness.results.layout import RUN_JSON

SCHEMA_VERSION = 2  # 1 = run.json before the field existed
Status = Literal["complete", "interrupted", "failed", "running"]
STATUSES: tuple[str, ...] = typing.get_args(Status)

T = TypeVar("T")


@dataclass
class CpuInfo:
    brand: str | None = None
    arch: str | None = None
    vendor: str | None = None
    family: int | str | None = None
    model: int | str | None = None
    stepping: int | str | None = None
    microcode: str | None = None
    hz_advertised: str | None = None
    flags: list[str] = field(default_factory=list)
    l2_cache_size: int | str | None = None
    l3_cache_size: int | str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. ARM implementer/part/variant/revision

    def description(self) -> str:
        """One line for people: the brand, plus vendor/family/model/stepping and microcode where known."""
        from harness.env import cpu_description

        return cpu_description(to_dict(self))

    def identity(self) -> str:
        """What tells two CPUs apart for like-for-like: vendor + family/model/stepping where both are known
        (a VM's brand may be only "AMD EPYC"), else the brand."""
        if self.family is not None and self.model is not None:
            parts = [self.vendor, f"family {self.family}", f"model {self.model}"]
            if self.stepping is not None:
                parts.append(f"stepping {self.stepping}")
            return " ".join(str(p) for p in parts if p)
        return self.brand or ""


@dataclass
class OnnxRuntimeInfo:
    version: str | None = None
    providers: list[str] = field(default_factory=list)
    genai_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Environment:
    harness_version: str | None = None
    git_commit: str | None = None
    cpu: CpuInfo = field(default_factory=CpuInfo)
    cores_physical: int | None = None
    cores_logical: int | None = None
    cpu_affinity: int | None = None
    ram_gb: float | None = None
    os: str | None = None
    kernel: str | None = None
    platform: str | None = None
    python: str | None = None
    packages: dict[str, str | None] = field(default_factory=dict)
    llama_cpp_system_info: str | None = None
    onnxruntime: OnnxRuntimeInfo | None = None
    memory_bandwidth_gbs: float | None = None
    trackers: dict[str, dict[str, Any]] = field(default_factory=dict)  # Tracker.environment() by name
    extra: dict[str, Any] = field(default_factory=dict)

    def installed_packages(self) -> dict[str, str]:
        """Package versions, leaving out those not installed (older run.json files list them as None)."""
        return {k: v for k, v in self.packages.items() if v}


@dataclass
class ConfigRecord:
    """run.json `config`: the run's settings as they took effect (harness.run.record.config_record). Not the
    run's settings type (harness.run.config.RunConfig), which also holds what a record does not keep."""

    models: list[str] = field(default_factory=list)
    talks: list[str] = field(default_factory=list)
    repeats: int | None = None
    warmup: int | None = None
    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    threads: int | None = None
    summary_lang: str | None = None  # "talk" = each talk's own language
    cooldown_s: float | None = None
    wait_quiet_s: float | None = None  # --wait-quiet bound; None = off
    corpus: str | None = None
    corpus_sha256: str | None = None
    no_mmap: bool | None = None
    flash_attn: bool | None = None
    repack: bool | None = None
    n_ctx: int | None = None
    n_gpu_layers: int | None = None
    provider: str | None = None
    offline: bool | None = None
    sample_interval_s: float | None = None
    threads_derivation: str | None = None  # how the default thread count was derived (harness.threads)
    scenario: str | None = None
    long_strategy: str | None = None
    serving: dict[str, Any] | None = None  # --via, --server-pid, --concurrency levels, --slo
    sweep: dict[str, list[Any]] = field(default_factory=dict)  # swept setting -> its values
    configs: list[dict[str, Any]] = field(default_factory=list)  # config_id, label, settings of each combination
    skipped_configs: list[dict[str, Any]] = field(default_factory=list)  # model, config_id, reason
    interleave: bool | None = None
    order: dict[str, Any] | None = None  # harness.run.plan.plan_record: the mode and every planned sample
    planned_samples: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mmap(self) -> bool | None:
        return None if self.no_mmap is None else not self.no_mmap


@dataclass
class ModelRecord:
    backend: str | None = None
    quant: str | None = None
    source: str | None = None
    files: list[str] = field(default_factory=list)
    size_bytes: int | None = None
    sha256: str | None = None
    provenance: Any = None
    load_s: float | None = None
    provider: str | None = None
    n_ctx: int | None = None
    mmap: bool | None = None
    engine: dict[str, Any] = field(default_factory=dict)
    engine_system_info: dict[str, Any] = field(default_factory=dict)
    load_peak_rss_mb: float | None = None
    warmup_s: float | None = None
    warmup_runs: int | None = None
    sample_timeout_s: float | None = None
    tokenizer: Any = None  # how prompts were tokenized when the engine is reached over HTTP
    sampler: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, Any] | None = None  # the managed or external server that served the model
    load: Any = None  # --concurrency: one entry per load level (harness.load)
    settings: str | None = None  # in `configs`: the config's settings, as `describe_config` words them
    configs: dict[str, ModelRecord] = field(default_factory=dict)  # swept runs: the load facts per config_id
    sha256_by_device: dict[str, str | None] = field(default_factory=dict)  # fleet runs: the weights each ran
    extra: dict[str, Any] = field(default_factory=dict)  # tracker reports (Tracker.report().record) and anything newer

    def merge(self, values: dict[str, Any]) -> None:
        """Set each value on its declared field, or keep it in `extra` (a tracker's own report keys)."""
        names = {f.name for f in fields(self)}
        for key, value in values.items():
            if key in names and key not in ("extra", "configs"):
                setattr(self, key, value)
            else:
                self.extra[key] = value


@dataclass
class NoiseRecord:
    """run.json `noise`: how many samples ran on a busy machine (harness.trackers.noise.finish_run)."""

    samples: int | None = None  # ok samples with a noisy verdict
    noisy: int | None = None
    other_cpu_pct_noisy_median: float | None = None  # % of a core other processes used, over the noisy ones
    canary_ms_median: float | None = None  # the fixed-work probe over all ok samples: the machine's speed
    threshold_other_cpu_pct: float | None = None
    threshold_steal_pct: float | None = None
    unavailable: str | None = None  # why the /proc columns are empty (no /proc), else None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Overhead:
    wall_s: float | None = None
    engine_s: float | None = None
    harness_s: float | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class JudgeRecord:
    """One `harness judge` pass over the run (harness.judge): who judged, how, and whether it passed its probes."""

    judge: str = ""  # the judge model: served name, or models.yaml id under --via
    endpoint: str | None = None
    via: str | None = None  # managed server that served the judge (harness.servers), if any
    mode: str | None = None  # rubric or pairwise
    settings: dict[str, Any] = field(default_factory=dict)  # temperature, seed, max_tokens, timeouts, ...
    prompts: dict[str, str] = field(default_factory=dict)  # prompt file name -> sha256 (hex)
    started_at: str | None = None
    finished_at: str | None = None
    judged: int | None = None  # summaries scored (rubric) or pairs judged (pairwise)
    invalid: int | None = None  # answers that were no valid JSON after the retry
    probes: dict[str, Any] = field(default_factory=dict)  # validity probes: rates, CIs, thresholds, verdicts
    fit: bool | None = None  # False: the judge failed a probe and its scores are marked unfit
    pairwise: dict[str, Any] | None = None  # pairwise mode: wins, ties, position consistency per pair
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    schema_version: int = SCHEMA_VERSION
    run_id: str = ""
    harness_version: str | None = None
    git_commit: str | None = None
    code_sha256: str | None = None  # of harness/ (harness.resume.code_fingerprint): --resume refuses other code
    command: list[str] = field(default_factory=list)
    cwd: str | None = None  # where the command ran: --resume reads relative paths from there
    pid: int | None = None  # of the process writing the run (a running run's owner)
    status: Status | None = None
    started_at: str | None = None
    finished_at: str | None = None
    planned_samples: int | None = None
    written_rows: int | None = None
    ok_rows: int | None = None  # written rows with status ok; every row an error -> status failed
    error_rows: int | None = None
    failure: str | None = None  # why a failed run failed (a write error, or every sample failed)
    interrupted_by: str | None = None  # SIGINT or SIGTERM when the run was interrupted
    resumes: list[dict[str, Any]] = field(default_factory=list)  # one entry per --resume: when, rows before, why
    engine_check: dict[str, Any] = field(default_factory=dict)  # llama.cpp repack self-check verdict
    config: ConfigRecord = field(default_factory=ConfigRecord)
    environment: Environment = field(default_factory=Environment)
    models: dict[str, ModelRecord] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)  # template file name -> sha256 prefix
    warnings: list[str] = field(default_factory=list)
    overhead: Overhead | None = None
    noise: NoiseRecord | None = None
    summary: dict[str, Any] | None = None  # harness.results.summary.RunSummary.run_json
    judges: dict[str, JudgeRecord] = field(default_factory=dict)  # `harness judge` passes by judge label
    fleet: dict[str, Any] | None = None  # --fleet: scheduler, devices requested and used, retry window
    devices: dict[str, Any] = field(default_factory=dict)  # --fleet: per device its worker, tags, fingerprint, jobs
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        record = _build(cls, data)
        if "schema_version" not in data:
            record.schema_version = 1
        if record.status is None:
            record.status = "complete" if record.finished_at else "interrupted"
        if record.planned_samples is None:
            planned = record.config.planned_samples
            if isinstance(planned, int):
                record.planned_samples = planned
            elif record.config.models and record.config.talks and record.config.repeats:
                record.planned_samples = len(record.config.models) * len(record.config.talks) * record.config.repeats
        return record

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        """Read run.json (or the run.json of a run directory); a malformed file is a one-line HarnessError."""
        return cls.validated(read_run_json(path), path if not Path(path).is_dir() else Path(path) / RUN_JSON)

    @classmethod
    def validated(cls, data: dict[str, Any], where: str | Path) -> RunRecord:
        """`from_dict` after checking every declared field's type; a mismatch is one line naming the field."""
        try:
            _check_fields(cls, data, "")
        except _FieldError as exc:
            raise HarnessError(
                f'{where}: "{exc.field}" must be {exc.expected}, not {_json_type(exc.value)}; '
                "this run.json was edited or damaged: fix that field or delete the file"
            ) from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: today's run.json keys plus schema_version, status, planned_samples and
        written_rows; unknown keys read from an older or newer file come back where they were."""
        return to_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2, default=str) + "\n"

    def prompt_shas(self) -> list[str]:
        return sorted(str(v) for v in self.prompts.values())


def read_run_json(path: str | Path) -> dict[str, Any]:
    """run.json (or a run directory's) as a dict; unreadable, not UTF-8, not JSON or not an object is a
    one-line HarnessError naming the file."""
    from harness.jsonl import loads_document

    path = Path(path)
    if path.is_dir():
        path = path / RUN_JSON
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc.strerror}); pass a run directory with a run.json") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: not valid JSON (not UTF-8); delete or fix it") from None
    data = loads_document(text, str(path), fix="delete or fix it")
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a JSON object; delete or fix it")
    return data


# --- type checks of a record read from disk -------------------------------------------------------------


class _FieldError(Exception):
    def __init__(self, field: str, expected: str, value: Any) -> None:
        self.field, self.expected, self.value = field, expected, value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {str(value)[:20]}"
    if isinstance(value, str):
        return f'the string "{value[:30]}"' + ("…" if len(value) > 30 else "")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if isinstance(tp, type) and is_dataclass(tp):
        return "an object"
    if origin is Literal:
        return " or ".join(f'"{a}"' for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "an object"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    return "a value"


def _matches(tp: Any, value: Any, where: str) -> bool:
    """Whether `value` fits `tp`; raises _FieldError for a mismatch deeper inside a matching container."""
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and is_dataclass(tp):
        if not isinstance(value, dict):
            return False
        _check_fields(tp, value, where + ".")
        return True
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(a, value, where) for a in typing.get_args(tp))
    if origin is list:
        if not isinstance(value, list):
            return False
        (inner,) = typing.get_args(tp)
        for i, item in enumerate(value):
            if not _matches(inner, item, f"{where}[{i}]"):
                raise _FieldError(f"{where}[{i}]", _describe(inner), item)
        return True
    if origin is dict:
        if not isinstance(value, dict):
            return False
        inner = typing.get_args(tp)[1]
        for key, item in value.items():
            if not _matches(inner, item, f"{where}.{key}"):
                raise _FieldError(f"{where}.{key}", _describe(inner), item)
        return True
    return True


def _check_fields(cls: type, data: dict[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name == "extra" or f.name not in data:
            continue
        value = data[f.name]
        if value is None and not _matches(hints[f.name], None, ""):
            continue  # an explicit null takes the field's default, as a missing key does
        if not _matches(hints[f.name], value, prefix + f.name):
            raise _FieldError(prefix + f.name, _describe(hints[f.name]), value)


# --- tolerant conversion between the dataclasses and plain dicts ---------------------------------------


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass a field holds directly or as Optional[...]; None otherwise."""
    if isinstance(tp, type) and is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if isinstance(a, type) and is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def _convert(tp: Any, value: Any) -> Any:
    cls = _dataclass_in(tp)
    if cls is not None:
        return _build(cls, value) if isinstance(value, dict) else (None if value is None else value)
    if typing.get_origin(tp) is dict and isinstance(value, dict):
        inner = _dataclass_in(typing.get_args(tp)[1])
        if inner is not None:
            return {k: _build(inner, v) if isinstance(v, dict) else v for k, v in value.items()}
    return value


def _build(cls: type[T], data: dict[str, Any]) -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    # An explicit null in a field that cannot hold one (a list, an object) takes the default, as a missing key.
    kwargs = {
        k: _convert(hints[k], v)
        for k, v in data.items()
        if k in names and k != "extra" and (v is not None or _matches(hints[k], None, k))
    }
    kwargs["extra"] = {k: v for k, v in data.items() if k not in names or k == "extra"}
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """A record (or any part of one) as plain dicts and lists, declared fields first, then its extras."""
    if is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj) if f.name != "extra"}
        out.update(to_dict(getattr(obj, "extra", {})))
        return out
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
