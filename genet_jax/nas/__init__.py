"""LLR-NAS (paper section 4.2): perturb each super-block, fine-tune, fit the local linear model,
select under a latency budget. The math is plain functions over plain data (genet_jax.nas.space,
.inherit, .local_linear, .latency_table, .candidates); the stages (.master, .finetune, .regression,
.calibration, .selection, .final) run it over a SearchContext (.context) and persist what they make;
genet_jax.nas.driver sequences them."""
