"""Stage 1, the MasterNet: trained through the trainer (workdir masternet/) or a given checkpoint
evaluated; its spec, NAS-validation accuracy A*, the weights A* measured (genet_jax.nas.weights)
and checkpoint kept in master.json (a records.MasterRecord)."""
from __future__ import annotations

import logging
import os

from genet_jax.arch.spec import NetworkSpec
from genet_jax.checkpoint import load_model_checkpoint
from genet_jax.nas.context import SearchContext, SearchError
from genet_jax.nas.records import MasterRecord, read_record_json
from genet_jax.nas.store import write_json
from genet_jax.nas.train_configs import master_train_config
from genet_jax.nas.weights import WEIGHTS_FIELD, measured_evaluation
from genet_jax.training.config import model_from_config
from genet_jax.training.evaluation import Evaluator
from genet_jax.training.loop import train

log = logging.getLogger("genet_jax.search")
MASTER_FILE = "master.json"


def run_master(ctx: SearchContext) -> MasterRecord:
    """The MasterNet's record: read from master.json, or made and written there. A record that does
    not name its weights (an older search's) is made again: a trained MasterNet is only evaluated again."""
    path = ctx.path(MASTER_FILE)
    if os.path.exists(path):
        stored = read_record_json(path)
        if not _older_than_weights(stored):
            return MasterRecord.from_json(stored, path)
        log.info("%s does not name the weights A* measured (an older search's): measuring A* again", path)
    record = _from_checkpoint(ctx) if ctx.config.master_checkpoint else _train_master(ctx)
    write_json(path, record.to_json())
    log.info("MasterNet: NAS-validation top-1 %.4f", record.accuracy)
    return record


def load_master(ctx: SearchContext) -> MasterRecord:
    """master.json, which the later stages need."""
    path = ctx.path(MASTER_FILE)
    if not os.path.exists(path):
        raise SearchError(f"{path} does not exist: run the MasterNet step first "
                          "(python search.py --config ... --stage master)")
    stored = read_record_json(path)
    if _older_than_weights(stored):
        raise SearchError(f"{path} does not name the weights A* measured (an older search's): run the MasterNet "
                          "step again (--stage master; a trained MasterNet is only evaluated again)")
    return MasterRecord.from_json(stored, path)


def _older_than_weights(stored) -> bool:
    """master.json of a search older than the weights rule (genet_jax.nas.weights)."""
    return isinstance(stored, dict) and WEIGHTS_FIELD not in stored


def master_variables(master: MasterRecord) -> dict:
    """The MasterNet variables fine-tunes inherit: those of the checkpoint step A* measured."""
    ckpt = load_model_checkpoint(master.checkpoint, master.checkpoint_step)
    if ckpt.weights != master.weights:
        raise SearchError(f"{ckpt.path} holds {ckpt.weights} weights, the MasterNet's A* measured its "
                          f"{master.weights} weights: run the MasterNet step again (delete master.json)")
    return ckpt.variables


def evaluate(ctx: SearchContext, spec: NetworkSpec, variables: dict) -> float:
    """NAS-validation top-1 of `spec` with `variables`."""
    evaluator = Evaluator(model_from_config(ctx.train_config, spec), ctx.train_config)
    return evaluator(variables, ctx.sources()[1], spec.resolution)["top1"]


def _from_checkpoint(ctx: SearchContext) -> MasterRecord:
    ckpt = load_model_checkpoint(ctx.config.master_checkpoint)
    if ckpt.spec.num_classes != ctx.sources()[0].num_classes:
        raise SearchError(f"master_checkpoint {ckpt.path} has {ckpt.spec.num_classes} classes, the data "
                          f"{ctx.sources()[0].num_classes}")
    log.warning("MasterNet from %s: if it was trained on the whole training split it has seen the NAS "
                "validation images, and A* is optimistic", ckpt.path)
    accuracy = evaluate(ctx, ckpt.spec, ckpt.variables)
    return MasterRecord(spec=ckpt.spec, accuracy=accuracy, weights=ckpt.weights,
                        checkpoint=os.path.dirname(ckpt.path), checkpoint_step=ckpt.step)


def _train_master(ctx: SearchContext) -> MasterRecord:
    final = train(master_train_config(ctx.config), ctx.sources())
    if final.interrupted:
        raise SearchError("MasterNet training was interrupted; re-run the same command to resume it")
    weights, evaluation = measured_evaluation(final)
    return MasterRecord(spec=NetworkSpec.from_dict(final.model), accuracy=evaluation["top1"], weights=weights,
                        checkpoint=final.checkpoint_dir, checkpoint_step=final.step)
