"""Latency by the paper's protocol: `timing` (the protocol, device identity, measurement context)
and `probes` (jitted whole-network probes); `python -m genet_jax.latency` is the command line."""
from genet_jax.latency.probes import LatencyResult, model_timing_variables, probe_latencies, probe_latency
from genet_jax.latency.timing import (PAPER_RUNS, PAPER_TRIM, ProbeSettings, measurement_context, time_forward,
                                      time_forwards, time_runs, timing_variables)

__all__ = ["LatencyResult", "model_timing_variables", "probe_latencies", "probe_latency", "PAPER_RUNS", "PAPER_TRIM", "ProbeSettings", "measurement_context", "time_forward", "time_forwards", "time_runs", "timing_variables"]
