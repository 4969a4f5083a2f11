"""LLR-NAS (paper section 4.2): perturb each super-block, fine-tune, fit the local linear model,
select under a latency budget. Each step is a function over plain data (genet_jax.nas.space,
.inherit, .regress, .latency_table, .select); genet_jax.nas.driver persists and sequences them."""
