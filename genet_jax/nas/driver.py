"""Sequencing and persistence of the LLR-NAS steps; everything expensive is written to the workdir
the moment it exists, so re-running the same command redoes nothing that finished:

    master.json                     MasterNet spec, NAS-validation accuracy A*, checkpoint
    masternet/                      its trainer workdir (when the search trains it)
    results/finetunes-*.jsonl       one line per finished fine-tune (one file per shard)
    finetunes/<key>/                a fine-tune's trainer workdir while it runs (resumable)
    pseudo_gradients.{json,csv}     the local linear model and its held-out quality
    latency/table_r{R}.json         the latency lookup table per resolution
    latency/parts_r{R}.json         every part probe behind it (a killed table build resumes)
    latency/probes.json             every full-network probe (spec key @ resolution -> ms/image)
    selection_r{R}.json, final/r{R} selection and training of the pick per resolution
    search_result.json, plots/*.png
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import shutil
import time
from typing import Optional

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from genet_jax.measure.output import write_csv
from genet_jax.nas import regress, report, store
from genet_jax.nas.inherit import inherit_variables, summarize
from genet_jax.nas.latency_table import LatencyTable, PartProbeCache, build_latency_table
from genet_jax.nas.probe_cache import NetworkProbe
from genet_jax.nas.select import NoStructureFits, predict_accuracy, predict_latency, sample_candidates, select
from genet_jax.nas.space import Perturbation, SearchSpace, perturbations, shard_jobs
from genet_jax.nas.store import fingerprint, read_json, write_json
from genet_jax.arch.spec import NetworkSpec
from genet_jax.latency.timing import ProbeSettings, measurement_context

log = logging.getLogger("genet_jax.search")
BASELINE = -1  # the `block` of the baseline job
NEAR_BUDGET_POOL = 20_000


class SearchError(RuntimeError):
    """A search that cannot go on as asked; the message says what to run or fix."""


class Search:
    def __init__(self, config: ml_collections.ConfigDict):
        from genet_jax.arch.registry import resolve_spec

        self.config = config
        self.workdir = os.path.abspath(config.workdir)
        self.space = SearchSpace.from_config(config.space)
        self.train_config = copy.deepcopy(config.train)
        with self.train_config.unlocked():
            self.train_config.data.eval_split = "holdout"  # the NAS validation set; the test split is never used
            self.train_config.seed = config.seed
        if self.train_config.data.holdout_size <= 0:
            raise SearchError("config.train.data.holdout_size must be > 0: LLR-NAS validates on held-out "
                              "training images, never on the test split")
        self.master_spec: NetworkSpec = resolve_spec(config.train.model)
        self._sources = None
        self.settings = ProbeSettings(config.latency.batch, config.latency.dtype, config.latency.conv_impl,
                                      config.latency.runs, config.latency.warmup, config.latency.trim,
                                      config.latency.rounds).resolved()
        self.measure = NetworkProbe(os.path.join(self.workdir, "latency", "probes.json"), self.settings)
        self.settings_key = self.measure.settings_key

    # ---- data and training ------------------------------------------------------------------
    def sources(self):
        from genet_jax.training.inputs import open_sources

        if self._sources is None:
            self._sources = open_sources(self.train_config)
        return self._sources

    def _run_config(self, workdir: str, spec: NetworkSpec, epochs: float, lr_per_256: Optional[float] = None,
                    warmup_epochs: Optional[float] = None, steps: int = -1) -> ml_collections.ConfigDict:
        c = copy.deepcopy(self.train_config)
        with c.unlocked():
            c.workdir = workdir
            c.model = json.dumps(spec.to_dict())
            c.resolution = -1
            c.num_train_steps = int(steps)
            c.num_epochs = float(epochs) if steps <= 0 else 1.0  # steps > 0 override epochs
            c.eval_every_epochs = c.num_epochs if steps <= 0 else 1e9  # evaluated once, at the end
            if lr_per_256 is not None:
                c.optim.lr_per_256 = lr_per_256
            if warmup_epochs is not None:
                c.optim.warmup_epochs = warmup_epochs
        return c

    # ---- step 1: the MasterNet ----------------------------------------------------------------
    def master(self) -> dict:
        """{'spec', 'accuracy', 'checkpoint'}: trained through the trainer, or a given checkpoint evaluated."""
        from genet_jax.interop.model_checkpoint import load_model_checkpoint
        from genet_jax.training.loop import train

        path = os.path.join(self.workdir, "master.json")
        if os.path.exists(path):
            return read_json(path)
        if self.config.master_checkpoint:
            ckpt = load_model_checkpoint(self.config.master_checkpoint)
            if ckpt.spec.num_classes != self.sources()[0].num_classes:
                raise SearchError(f"master_checkpoint {ckpt.path} has {ckpt.spec.num_classes} classes, the data "
                                  f"{self.sources()[0].num_classes}")
            log.warning("MasterNet from %s: if it was trained on the whole training split it has seen the NAS "
                        "validation images, and A* is optimistic", ckpt.path)
            accuracy = self.evaluate(ckpt.spec, ckpt.variables)
            record = {"spec": ckpt.spec.to_dict(), "accuracy": accuracy, "checkpoint": ckpt.path}
        else:
            run = self._run_config(os.path.join(self.workdir, "masternet"), self.master_spec,
                                   self.train_config.num_epochs, steps=self.train_config.num_train_steps)
            final = train(run, self.sources())
            if final.interrupted:
                raise SearchError("MasterNet training was interrupted; re-run the same command to resume it")
            record = {"spec": final.model, "accuracy": final.eval["top1"], "checkpoint": final.checkpoint_dir}
        write_json(path, record)
        log.info("MasterNet: NAS-validation top-1 %.4f", record["accuracy"])
        return record

    def master_record(self) -> dict:
        path = os.path.join(self.workdir, "master.json")
        if not os.path.exists(path):
            raise SearchError(f"{path} does not exist: run the MasterNet step first "
                              "(python search.py --config ... --stage master)")
        return read_json(path)

    def evaluate(self, spec: NetworkSpec, variables: dict) -> float:
        from genet_jax.training.config import model_from_config
        from genet_jax.training.evaluation import Evaluator

        evaluate = Evaluator(model_from_config(self.train_config, spec), self.train_config)
        return evaluate(variables, self.sources()[1], spec.resolution)["top1"]

    # ---- step 2: perturb and fine-tune ---------------------------------------------------------
    def jobs(self, master_spec: NetworkSpec) -> list[Perturbation]:
        """Job 0 is the unperturbed MasterNet under the fine-tune schedule: the regression's baseline,
        so that what fine-tuning alone adds is not credited to the perturbations."""
        perturbed = perturbations(master_spec, self.config.perturbations_per_block, self.config.seed, self.space)
        return [Perturbation(0, BASELINE, master_spec)] + [Perturbation(j.job + 1, j.block, j.spec) for j in perturbed]

    def finetune(self, shard: int = 0, num_shards: int = 1) -> int:
        """Fine-tune this shard's perturbations not yet in the results store; returns how many ran."""
        from genet_jax.interop.model_checkpoint import load_model_checkpoint
        from genet_jax.models.network import init_variables
        from genet_jax.training.config import model_from_config
        from genet_jax.training.loop import train
        from genet_jax.training.metrics import MetricWriter

        master = self.master_record()
        master_spec = NetworkSpec.from_dict(master["spec"])
        results_dir = os.path.join(self.workdir, "results")
        done = store.load_results(results_dir)
        todo = [job for job in shard_jobs(self.jobs(master_spec), shard, num_shards) if job.key not in done]
        if not todo:
            return 0
        master_variables = load_model_checkpoint(master["checkpoint"]).variables
        out = store.shard_file(results_dir, shard, num_shards)
        ft = self.config.finetune
        writer = MetricWriter(os.path.join(self.workdir, "search_metrics"))
        try:
            for job in tqdm(todo, desc=f"fine-tunes (shard {shard}/{num_shards})", unit="net"):
                model = model_from_config(self.train_config, job.spec)
                init_key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), int(job.key[:7], 16))
                fresh = jax.device_get(init_variables(model, init_key))
                variables, inherited = inherit_variables(master_variables, fresh, master_spec, job.spec)
                run_dir = os.path.join(self.workdir, "finetunes", job.key)
                run = self._run_config(run_dir, job.spec, ft.epochs, ft.lr_per_256, ft.warmup_epochs,
                                       ft.num_train_steps)
                with run.unlocked():
                    run.progress_bar = False
                started = time.time()
                final = train(run, self.sources(), variables)
                if final.interrupted:
                    raise SearchError("interrupted (SIGTERM); re-run the same command to resume")
                record = {"key": job.key, "job": job.job, "block": job.block,
                          "replacement": None if job.block == BASELINE else job.spec.blocks[job.block].to_dict(),
                          "spec": job.spec.to_dict(),
                          "accuracy": final.eval["top1"], "top5": final.eval["top5"], "steps": final.step,
                          "wall_seconds": time.time() - started, "inherited": summarize(inherited)}
                if jax.process_index() == 0:
                    store.append_result(out, record)
                writer.write(job.job, {"finetune/accuracy": record["accuracy"],
                                       "finetune/delta_vs_master": record["accuracy"] - master["accuracy"]})
                if not ft.keep_checkpoints:
                    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
        finally:
            writer.close()
        return len(todo)

    # ---- step 3: regression --------------------------------------------------------------------
    def regress(self, allow_missing: bool = False) -> tuple[regress.LocalLinearModel, dict]:
        master = self.master_record()
        master_spec = NetworkSpec.from_dict(master["spec"])
        results = store.load_results(os.path.join(self.workdir, "results"))
        jobs = self.jobs(master_spec)
        missing = [job.job for job in jobs if job.key not in results]
        if missing and (not allow_missing or jobs[0].job in missing):
            raise SearchError(f"{len(missing)} of {len(jobs)} fine-tunes have no result yet (jobs {missing[:10]}): "
                              "finish every shard" + ("" if jobs[0].job in missing else ", or pass --allow_missing"))
        baseline = results[jobs[0].key]["accuracy"]
        records = [results[job.key] for job in jobs[1:] if job.key in results]
        samples = [regress.Sample.from_record(r) for r in records]
        ridge = self.config.regression.ridge
        model = regress.fit_local_linear_model(master_spec, baseline, samples, ridge)
        held_out = regress.leave_one_out(master_spec, baseline, samples, ridge)
        fitted = [model.predict(NetworkSpec.from_dict(r["spec"])) for r in records]
        quality = {"in_sample": regress.fit_quality([s.accuracy for s in samples], fitted),
                   "leave_one_out": regress.fit_quality([s.accuracy for s in samples], held_out)}
        table = {**model.to_dict(), "masternet_accuracy": master["accuracy"], "quality": quality, "samples": [
            {"job": r["job"], "block": r["block"], "replacement": r["replacement"], "accuracy": r["accuracy"],
             "fitted": f, "held_out_prediction": None if np.isnan(h) else float(h)}
            for r, f, h in zip(records, fitted, held_out)]}
        write_json(os.path.join(self.workdir, "pseudo_gradients.json"), table)
        write_csv(os.path.join(self.workdir, "pseudo_gradients.csv"), model.rows())
        report.plot_predicted_vs_measured(os.path.join(self.workdir, "plots", "accuracy_predicted_vs_measured.png"),
                                          [s.accuracy for s in samples], held_out, baseline, quality)
        return model, quality

    # ---- step 4: latency and selection ---------------------------------------------------------
    def near_budget(self, table: LatencyTable, master: NetworkSpec, type_keys: list[list[str]], budget: float,
                    count: int, seed: int) -> list[NetworkSpec]:
        """`count` random structures the table puts within +-30% of the budget: where selection decides."""
        pool = sample_candidates(master, type_keys, self.space, NEAR_BUDGET_POOL, seed)
        predicted = predict_latency(table, pool, master.stem_width)
        rows = np.flatnonzero((predicted >= 0.7 * budget) & (predicted <= 1.3 * budget))
        rows = rows[rows > 0]
        picked = np.random.default_rng(seed).choice(rows, min(count, len(rows)), replace=False) if len(rows) else []
        return [pool.spec(master, int(row)) for row in sorted(picked)]

    def latency_table(self, model: regress.LocalLinearModel, resolution: int, budget: float) -> LatencyTable:
        """Built once per resolution, then calibrated: a first scale from the MasterNet's full-network
        probe, then the power-law fit over the MasterNet and structures near the budget."""
        path = os.path.join(self.workdir, "latency", f"table_r{resolution}.json")
        master = model.master.replace(resolution=resolution)
        type_keys = [model.allowed_types(i) for i in range(len(master.blocks))]
        inputs = fingerprint(master.to_dict(), type_keys, self.settings_key, budget, self.config.seed,
                             self.config.latency.to_dict(), self.config.space.to_dict())
        if os.path.exists(path):
            stored = read_json(path)
            if stored.get("fingerprint") == inputs:
                return LatencyTable.from_dict(stored["table"])
            log.info("%s was built for other inputs (types, settings or budget): rebuilding", path)
        parts = PartProbeCache(os.path.join(self.workdir, "latency", f"parts_r{resolution}.json"))
        table = build_latency_table(model.master, type_keys, self.space, resolution, self.settings,
                                    self.config.latency.grid_points, timer=parts,
                                    line_points=self.config.latency.line_points)
        probes = self.config.latency.calibration_probes
        if probes:
            raw_master, measured_master = table.predict_spec(master), self.measure(master)
            table.calibrate([raw_master], [measured_master])
            specs = self.near_budget(table, master, type_keys, budget, probes, self.config.seed + 7919)
            table_raw = dataclasses.replace(table, scale=1.0, exponent=1.0)
            raw = [raw_master] + [table_raw.predict_spec(spec) for spec in specs]
            measured = [measured_master] + self.measure.many(specs, "calibration probes")
            table.calibrate(raw, measured)
        write_json(path, {"fingerprint": inputs, "table": table.to_dict()})
        return table

    def check_latency_table(self, table: LatencyTable, master: NetworkSpec, type_keys: list[list[str]],
                            budget: float) -> dict:
        """The table against full-network probes of near-budget structures it was not calibrated on."""
        count = self.config.latency.validation_probes
        if count < 1:
            return {"pairs": 0, "scale": table.scale, "exponent": table.exponent}
        specs = self.near_budget(table, master, type_keys, budget, count, self.config.seed + 104729)
        if not specs:
            return {"pairs": 0, "scale": table.scale, "exponent": table.exponent}
        predicted = np.asarray([table.predict_spec(spec) for spec in specs])
        measured = np.asarray(self.measure.many(specs, "table check probes"))
        uncalibrated = table.uncalibrated(predicted)
        quality = regress.fit_quality(measured, predicted)
        report.plot_latency_table(os.path.join(self.workdir, "plots", f"latency_table_r{master.resolution}.png"),
                                  measured, predicted, uncalibrated)
        return {"pairs": int(len(measured)), "scale": table.scale, "exponent": table.exponent,
                "median_abs_relative_error": float(np.median(np.abs(predicted - measured) / measured)),
                "median_abs_relative_error_uncalibrated": float(np.median(np.abs(uncalibrated - measured) / measured)),
                "spearman": quality["spearman"],
                "probes": [{"predicted_ms": float(p), "measured_ms": float(m)} for p, m in zip(predicted, measured)]}

    def budget(self, master_spec: NetworkSpec) -> float:
        sel = self.config.selection
        if sel.budget_ms > 0:
            return float(sel.budget_ms)
        return float(sel.budget_master_fraction) * self.measure(master_spec)

    def select(self, model: regress.LocalLinearModel, resolution: int) -> dict:
        path = os.path.join(self.workdir, f"selection_r{resolution}.json")
        budget = self.budget(model.master)
        inputs = fingerprint(model.to_dict(), budget, self.settings_key, self.config.seed,
                             self.config.selection.to_dict(), self.config.latency.to_dict())
        if os.path.exists(path):
            stored = read_json(path)
            if stored.get("fingerprint") == inputs:
                return stored
            log.info("%s was selected from other inputs (fine-tune results, budget or settings): redoing", path)
        master = model.master.replace(resolution=resolution)
        table = self.latency_table(model, resolution, budget)
        type_keys = [model.allowed_types(i) for i in range(len(master.blocks))]
        sel = self.config.selection
        started = time.perf_counter()
        candidates = sample_candidates(master, type_keys, self.space, sel.num_candidates, self.config.seed)
        accuracy = predict_accuracy(model, candidates)
        latency = predict_latency(table, candidates, master.stem_width)
        scoring_seconds = time.perf_counter() - started
        with tqdm(desc=f"full-network probes @{resolution}", unit="net", leave=False) as bar:
            choice = select(master, candidates, accuracy, latency, budget, self.measure, sel.top_k,
                            slack=sel.table_slack, progress=bar.update)
        table_check = self.check_latency_table(table, master, type_keys, budget)
        result = {"fingerprint": inputs, "resolution": resolution, "budget_ms": budget,
                  "latency_measured_on": measurement_context(self.settings), "spec": choice.spec.to_dict(),
                  "predicted_accuracy": choice.predicted_accuracy, "predicted_latency_ms": choice.predicted_latency,
                  "measured_latency_ms": choice.measured_latency, "candidates": len(candidates),
                  "candidates_under_budget": int(np.sum(latency <= budget)),
                  "candidates_within_slack": int(np.sum(latency <= budget * (1 + sel.table_slack))),
                  "scoring_seconds": scoring_seconds,
                  "candidates_per_minute": len(candidates) / max(scoring_seconds, 1e-9) * 60,
                  "latency_table": table_check, "measured": choice.measured,
                  "selection_probes_median_abs_relative_error": float(np.median(
                      [abs(m["predicted_latency"] - m["measured_latency"]) / m["measured_latency"]
                       for m in choice.measured]))}
        report.plot_candidates(os.path.join(self.workdir, "plots", f"candidates_r{resolution}.png"), latency,
                               accuracy, budget, choice.measured, choice, self.config.seed)
        write_json(path, result)
        return result

    def train_pick(self, selection: dict) -> dict:
        from genet_jax.training.loop import train

        spec = NetworkSpec.from_dict(selection["spec"])
        run = self._run_config(os.path.join(self.workdir, "final", f"r{selection['resolution']}"), spec,
                               self.config.final.epochs, steps=self.config.final.num_train_steps)
        final = train(run, self.sources())
        if final.interrupted:
            raise SearchError("interrupted (SIGTERM); re-run the same command to resume")
        return {"accuracy": final.eval["top1"], "top5": final.eval["top5"], "checkpoint": final.checkpoint_dir}

    def finish(self, allow_missing: bool = False) -> dict:
        from genet_jax.arch.structure_string import to_structure_string

        master = self.master_record()
        model, quality = self.regress(allow_missing)
        per_resolution, failed = [], []
        for resolution in self.config.selection.resolutions:
            try:
                chosen = self.select(model, int(resolution))
            except NoStructureFits as e:
                log.warning("resolution %d: %s", resolution, e)
                failed.append({"resolution": int(resolution), "error": str(e)})
                continue
            entry = {k: v for k, v in chosen.items() if k != "measured"}
            if self.config.final.epochs > 0 or self.config.final.num_train_steps > 0:
                entry["trained"] = self.train_pick(chosen)
            per_resolution.append(entry)
        if not per_resolution:
            raise SearchError("no resolution has a structure under the budget: " + "; ".join(
                f"{f['resolution']}: {f['error']}" for f in failed))
        trained = [e for e in per_resolution if "trained" in e]
        best = max(trained, key=lambda e: e["trained"]["accuracy"]) if trained else \
            max(per_resolution, key=lambda e: e["predicted_accuracy"])
        resolution_choice = "trained accuracy on the NAS validation split" if trained else \
            "predicted accuracy (no final training: the model has no resolution term)"
        spec = NetworkSpec.from_dict(best["spec"])
        result = {"selected": {"spec": spec.to_dict(), "structure_string": to_structure_string(spec),
                               "resolution": best["resolution"], "predicted_accuracy": best["predicted_accuracy"],
                               "measured_latency_ms": best["measured_latency_ms"], "budget_ms": best["budget_ms"],
                               "trained_accuracy": best.get("trained", {}).get("accuracy")},
                  "master": {"spec": master["spec"], "accuracy": master["accuracy"],
                             "measured_latency_ms": self.measure(NetworkSpec.from_dict(master["spec"]))},
                  "regression_quality": quality, "resolution_choice": resolution_choice,
                  "resolutions": per_resolution, "resolutions_without_a_fit": failed,
                  "probe_settings": self.settings.__dict__}
        write_json(os.path.join(self.workdir, "search_result.json"), result)
        return result
