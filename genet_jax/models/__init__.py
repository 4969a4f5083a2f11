"""Flax modules built from an architecture spec: the conv-BN layers and residual units, the
MasterNet, the per-backend convolution kernels and BN folding."""
