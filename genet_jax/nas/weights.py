"""Which weights the search inherits and measures, one rule at every stage: the exponential moving
average of the weights where the run keeps one (optim.ema_decay > 0; its checkpoints then hold it),
else the raw weights. The MasterNet's A*, the weights each fine-tune inherits, every fine-tune's
top-1 and each pick's trained top-1 follow it, and each record names the weights it measured in its
`weights` field ("ema" or "raw")."""
from __future__ import annotations

from typing import Iterable

from genet_jax.checkpoint import EMA_WEIGHTS, RAW_WEIGHTS
from genet_jax.nas.context import SearchContext, SearchError
from genet_jax.nas.records import FinetuneRecord
from genet_jax.training.result import TrainResult

WEIGHTS_FIELD = "weights"  # the field of master.json naming them, absent from older searches' files
MISMATCHED_JOBS_SHOWN = 10  # an error names this many of the jobs measured on other weights


def measured_evaluation(final: TrainResult) -> tuple[str, dict]:
    """(weights, evaluation) of a finished training run under the rule."""
    return (EMA_WEIGHTS, final.eval_ema) if final.eval_ema else (RAW_WEIGHTS, final.eval)


def finetune_weights(ctx: SearchContext) -> str:
    """The weights a fine-tune of this search measures: its trainer keeps an EMA or does not."""
    return EMA_WEIGHTS if ctx.train_config.optim.ema_decay > 0 else RAW_WEIGHTS


def check_finetune_weights(ctx: SearchContext, records: Iterable[FinetuneRecord], store: str) -> None:
    """Refuse fine-tune results measured on other weights than this search's fine-tunes measure
    (written by an older version, or with another optim.ema_decay): a regression over them would
    mix two kinds of top-1."""
    expected = finetune_weights(ctx)
    other = sorted(r.job for r in records if r.weights != expected)
    if other:
        raise SearchError(f"{store}: fine-tunes {other[:MISMATCHED_JOBS_SHOWN]} ({len(other)} in all) measured "
                          f"other weights than the {expected!r} weights this search measures: delete their results "
                          "(or the whole folder) to fine-tune them again")
