"""The paper's measurements as tools: latency vs batch / MACs / parameters (Fig. 2), block
profiling (Fig. 3), intrinsic rank of conv kernels (Fig. 4). Each writes a CSV and PNG plots."""
