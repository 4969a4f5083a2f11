"""What the LLR-NAS stages hand each other: one frozen record per stored file (master.json, a line of
results/finetunes-*.jsonl, pseudo_gradients.json, selection_r{R}.json, search_result.json), stored
as the JSON object `to_json()` gives (one key per field, in field order) and read back by
`from_json(data, source)` or `load_record(cls, path)`.

Each file carries its `schema_version`. Files written before it existed (version 0) hold the same
fields without it and load as they are, into records of this version; a file of another version, or
without a field its record needs, is refused with a RecordError (a SearchError) naming the file and
what is wrong."""
from __future__ import annotations

import dataclasses
import json
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, Optional

from genet_jax.arch.spec import NetworkSpec, SuperBlockSpec
from genet_jax.errors import InputError
from genet_jax.checkpoint import RAW_WEIGHTS
from genet_jax.nas.context import SearchError
from genet_jax.nas.local_linear import LocalLinearModel

SCHEMA_VERSION = 1
SCHEMA_VERSION_FIELD = "schema_version"
UNVERSIONED = 0  # the files of genet_jax before records: version 1's fields without schema_version
READABLE_VERSIONS = (UNVERSIONED, SCHEMA_VERSION)
MODEL_FIELDS = ("master", "master_accuracy", "fits")  # LocalLinearModel.to_dict's, top-level in pseudo_gradients.json
# Fine-tune results written before they named their weights hold the raw weights' top-1.
UNRECORDED_FINETUNE_WEIGHTS = RAW_WEIGHTS
_DECODE = "decode"  # a field's metadata key: how from_json reads it


class RecordError(SearchError):
    """A stored record this genet_jax cannot read; the message names the file."""


def read_record_json(path: str) -> Any:
    """The JSON in `path`; text that is not JSON is a RecordError naming the file."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise RecordError(f"{path}: not valid JSON ({e})") from None


def load_record(record_class, path: str):
    """The record of `record_class` stored in `path`."""
    return record_class.from_json(read_record_json(path), path)


def _stored_fields(cls, data: Any, source: str, optional: Mapping[str, Any]) -> dict:
    """The fields of record class `cls` in `data`, checked: a JSON object of a readable version with
    every field (those in `optional` default to its value) and no other."""
    if not isinstance(data, Mapping):
        raise RecordError(f"{source}: must be a JSON object, got {type(data).__name__}")
    version = data.get(SCHEMA_VERSION_FIELD, UNVERSIONED)
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise RecordError(f"{source}: schema_version {version!r} is not one this genet_jax reads (none or "
                          f"{SCHEMA_VERSION}): written by a newer genet_jax?")
    names = [f.name for f in dataclasses.fields(cls) if f.name != SCHEMA_VERSION_FIELD]
    missing = [name for name in names if name not in data and name not in optional]
    if missing:
        raise RecordError(f"{source}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(names) - {SCHEMA_VERSION_FIELD})
    if unknown:
        raise RecordError(f"{source}: unknown field(s) {', '.join(unknown)}: written by another genet_jax?")
    return {name: data[name] if name in data else optional[name] for name in names}


def _json(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, (NetworkSpec, SuperBlockSpec)):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value


class _Record:
    """A JSON object with one key per field, in field order. `OPTIONAL` fields may be absent from
    older files: those then hold its value."""

    OPTIONAL: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    def to_json(self) -> dict:
        return {f.name: _json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Any, source: str):
        decoders = {f.name: f.metadata.get(_DECODE) for f in dataclasses.fields(cls)}
        return cls(**{name: value if decoders[name] is None else decoders[name](value, f"{source}: {name}")
                      for name, value in _stored_fields(cls, data, source, cls.OPTIONAL).items()})


def _stored_as(decode: Callable[[Any, str], Any], **field_options) -> Any:
    """A record field that `from_json` reads with `decode(stored value, source)`."""
    return dataclasses.field(metadata={_DECODE: decode}, **field_options)


def _spec(data: Any, source: str) -> NetworkSpec:
    try:
        return NetworkSpec.from_dict(data)
    except InputError as e:
        raise RecordError(f"{source}: {e}") from None


def _block(data: Any, source: str) -> Optional[SuperBlockSpec]:
    if data is None:
        return None
    try:
        return SuperBlockSpec(**data)
    except (InputError, TypeError) as e:
        raise RecordError(f"{source}: {e}") from None


def _optional(record_class) -> Callable[[Any, str], Any]:
    return lambda data, source: None if data is None else record_class.from_json(data, source)


def _tuple_of(record_class=None) -> Callable[[Any, str], tuple]:
    """A JSON list read as a tuple (of `record_class` records)."""
    def decode(data: Any, source: str) -> tuple:
        if not isinstance(data, list):
            raise RecordError(f"{source}: must be a list, got {type(data).__name__}")
        return tuple(item if record_class is None else record_class.from_json(item, f"{source}[{i}]")
                     for i, item in enumerate(data))
    return decode


@dataclasses.dataclass(frozen=True)
class MasterRecord(_Record):
    """master.json: the MasterNet, its NAS-validation top-1 `A*`, the weights `A*` measured and the
    checkpoint step holding them."""

    spec: NetworkSpec = _stored_as(_spec)
    accuracy: float
    weights: str
    checkpoint: str  # the checkpoint directory
    checkpoint_step: int
    schema_version: int = SCHEMA_VERSION


@dataclasses.dataclass(frozen=True)
class FinetuneRecord(_Record):
    """A finished fine-tune: one line of results/finetunes-*.jsonl. `block` is -1 and `replacement`
    None for the baseline job (the unperturbed MasterNet)."""

    OPTIONAL: ClassVar[Mapping[str, Any]] = MappingProxyType({"weights": UNRECORDED_FINETUNE_WEIGHTS})

    key: str
    job: int
    block: int
    replacement: Optional[SuperBlockSpec] = _stored_as(_block)
    spec: NetworkSpec = _stored_as(_spec)
    weights: str
    accuracy: float
    top5: float
    steps: int
    wall_seconds: float
    inherited: dict  # how many variables were copied, partly copied, fresh
    schema_version: int = SCHEMA_VERSION


@dataclasses.dataclass(frozen=True)
class FittedSample(_Record):
    """One perturbation in pseudo_gradients.json: its fine-tuned top-1, the model's fit and its
    leave-one-out prediction (None where its type was seen only in it)."""

    job: int
    block: int
    replacement: SuperBlockSpec = _stored_as(_block)
    accuracy: float
    fitted: float
    held_out_prediction: Optional[float]


def _model(data: Any, source: str) -> LocalLinearModel:
    missing = [name for name in MODEL_FIELDS if name not in data]
    if missing:
        raise RecordError(f"{source}: missing field(s) {', '.join(missing)}")
    try:
        return LocalLinearModel.from_dict(data)
    except (InputError, KeyError, TypeError, ValueError) as e:
        raise RecordError(f"{source}: not a local linear model ({type(e).__name__}: {e})") from None


@dataclasses.dataclass(frozen=True)
class RegressionRecord(_Record):
    """pseudo_gradients.json: the local linear model (its fields at the top level), the MasterNet's
    A* and weights, the weights the fine-tunes measured, the fit quality and every sample."""

    model: LocalLinearModel = _stored_as(_model)
    masternet_accuracy: float
    masternet_weights: str
    weights: str
    quality: dict  # {'in_sample', 'leave_one_out'}: local_linear.fit_quality's
    samples: tuple[FittedSample, ...] = _stored_as(_tuple_of(FittedSample))
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        fields = super().to_json()
        del fields["model"]
        return {**self.model.to_dict(), **fields}

    @classmethod
    def from_json(cls, data: Any, source: str) -> RegressionRecord:
        if isinstance(data, Mapping):  # the model's fields gathered into one
            data = {"model": {k: data[k] for k in MODEL_FIELDS if k in data},
                    **{k: v for k, v in data.items() if k not in MODEL_FIELDS}}
        return super().from_json(data, source)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _SelectionFields(_Record):
    """What selection_r{R}.json and search_result.json's resolutions hold alike."""

    fingerprint: str  # of the inputs it was selected from (model, budget, probe settings, seed, config)
    resolution: int
    budget_ms: float
    latency_measured_on: dict
    spec: NetworkSpec = _stored_as(_spec)
    predicted_accuracy: float
    predicted_latency_ms: float
    measured_latency_ms: float
    candidates: int
    candidates_under_budget: int
    candidates_within_slack: int
    scoring_seconds: float
    candidates_per_minute: float
    latency_table: dict  # the table's check against the full-network probe


@dataclasses.dataclass(frozen=True, kw_only=True)
class SelectionRecord(_SelectionFields):
    """selection_r{R}.json: the pick at resolution R under the budget, every structure probed for it
    (`measured`) and the table's median error on them."""

    measured: tuple[dict, ...] = _stored_as(_tuple_of())
    selection_probes_median_abs_relative_error: float
    schema_version: int = SCHEMA_VERSION


@dataclasses.dataclass(frozen=True)
class TrainedPick(_Record):
    """A resolution's pick trained from scratch: the top-1/top-5 of the weights the rule names."""

    accuracy: float
    top5: float
    weights: str
    checkpoint: str  # the checkpoint directory


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResolutionPick(_SelectionFields):
    """One resolution in search_result.json: its selection less the probe list and, where final
    training is configured (stored only then), its pick's training."""

    OPTIONAL: ClassVar[Mapping[str, Any]] = MappingProxyType({"trained": None})

    selection_probes_median_abs_relative_error: float
    trained: Optional[TrainedPick] = _stored_as(_optional(TrainedPick), default=None)

    @classmethod
    def of(cls, selection: SelectionRecord, trained: Optional[TrainedPick]) -> ResolutionPick:
        kept = {f.name: getattr(selection, f.name) for f in dataclasses.fields(cls) if f.name != "trained"}
        return cls(**kept, trained=trained)

    def to_json(self) -> dict:
        fields = super().to_json()
        if self.trained is None:
            del fields["trained"]
        return fields


@dataclasses.dataclass(frozen=True)
class NoFit(_Record):
    """A resolution without a structure under the budget, and why."""

    resolution: int
    error: str


@dataclasses.dataclass(frozen=True)
class SelectedStructure(_Record):
    """search_result.json's pick: the best resolution's (genet_jax.nas.final.best_resolution)."""

    spec: NetworkSpec = _stored_as(_spec)
    structure_string: str
    resolution: int
    predicted_accuracy: float
    measured_latency_ms: float
    budget_ms: float
    trained_accuracy: Optional[float]  # None without final training
    trained_weights: Optional[str]


@dataclasses.dataclass(frozen=True)
class MasterSummary(_Record):
    """search_result.json's MasterNet: A*, the weights it measured and its probed latency."""

    spec: NetworkSpec = _stored_as(_spec)
    accuracy: float
    weights: str
    measured_latency_ms: float


@dataclasses.dataclass(frozen=True)
class SearchResult(_Record):
    """search_result.json: the pick, the MasterNet, the regression quality, how the resolution was
    chosen, every resolution's selection (or why none fits) and the resolved probe settings."""

    selected: SelectedStructure = _stored_as(SelectedStructure.from_json)
    master: MasterSummary = _stored_as(MasterSummary.from_json)
    regression_quality: dict
    resolution_choice: str
    resolutions: tuple[ResolutionPick, ...] = _stored_as(_tuple_of(ResolutionPick))
    resolutions_without_a_fit: tuple[NoFit, ...] = _stored_as(_tuple_of(NoFit))
    probe_settings: dict
    schema_version: int = SCHEMA_VERSION
