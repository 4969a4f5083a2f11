"""The search's tables and plots: pseudo-gradient CSV, predicted vs measured accuracy, candidates
against latency with the budget and the pick. In a multi-process job process 0 alone writes them."""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from genet_jax import outputs as output
from genet_jax.outputs import new_figure

PLOTTED_CANDIDATES = 5000


def save_figure(fig, path: str) -> str:
    if jax.process_index() == 0:  # the processes share the workdir: one writer
        return output.save_figure(fig, path)
    import matplotlib.pyplot as plt  # imported by new_figure already

    plt.close(fig)
    return path


def write_csv(path: str, rows: Sequence[dict]) -> str:
    return output.write_csv(path, rows) if jax.process_index() == 0 else path


def plot_predicted_vs_measured(path: str, measured: Sequence[float], predicted: Sequence[float],
                               master_accuracy: float, quality: dict) -> str:
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    keep = np.isfinite(predicted)
    fig, (ax,) = new_figure(1, 5.0, 4.5)
    if keep.any():
        ax.scatter(measured[keep] * 100, predicted[keep] * 100, s=18)
        low = min(measured[keep].min(), predicted[keep].min()) * 100
        high = max(measured[keep].max(), predicted[keep].max()) * 100
        ax.plot([low, high], [low, high], "k--", lw=0.8, label="predicted = measured")
    ax.axvline(master_accuracy * 100, color="gray", lw=0.8, label="MasterNet A*")
    loo = quality["leave_one_out"]
    rho = "n/a" if loo["spearman"] is None else f"{loo['spearman']:.2f}"
    ax.set_title(f"held-out perturbations: Spearman {rho} ({loo['pairs']} pairs)", fontsize=9)
    ax.set_xlabel("fine-tuned accuracy (%)")
    ax.set_ylabel("predicted accuracy, leave-one-out (%)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_candidates(path: str, latency: np.ndarray, accuracy: np.ndarray, budget: float, measured: Sequence[dict],
                    choice, seed: int) -> str:
    rows = np.random.default_rng(seed).permutation(len(latency))[:PLOTTED_CANDIDATES]
    fig, (ax,) = new_figure(1, 6.0, 4.5)
    ax.scatter(latency[rows], accuracy[rows] * 100, s=3, alpha=0.3, label="candidates (predicted)")
    ax.scatter([m["measured_latency"] for m in measured], [m["predicted_accuracy"] * 100 for m in measured],
               s=25, marker="x", color="tab:orange", label="probed (measured latency)")
    ax.scatter([choice.measured_latency], [choice.predicted_accuracy * 100], s=120, marker="*", color="tab:red",
               label="pick", zorder=3)
    ax.axvline(budget, color="k", ls="--", lw=0.8, label=f"budget {budget:.3g} ms")
    ax.set_xscale("log")  # candidates span orders of magnitude; the decision happens near the budget
    ax.set_xlabel("latency (ms/image)")
    ax.set_ylabel("predicted accuracy (%)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_latency_table(path: str, measured: np.ndarray, predicted: np.ndarray, uncalibrated: np.ndarray) -> str:
    fig, (ax,) = new_figure(1, 5.0, 4.5)
    ax.scatter(measured, uncalibrated, s=18, marker="x", color="tab:gray", label="sum of parts")
    ax.scatter(measured, predicted, s=18, label="calibrated table")
    low, high = float(min(measured.min(), predicted.min())), float(max(measured.max(), predicted.max()))
    ax.plot([low, high], [low, high], "k--", lw=0.8, label="predicted = measured")
    ax.set_xlabel("measured latency (ms/image)")
    ax.set_ylabel("lookup-table latency (ms/image)")
    ax.set_title("latency table vs full-network probe (held-out structures)", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
