"""What `--distributed` reads from a cluster's environment: a Slurm task that would use one GPU of the
node's eight (JAX's Slurm detection binds a process to GPU SLURM_LOCALID) is told how to use them all."""
from genet_jax.distributed import unused_gpus_warning

SLURM_NODE_OF_8_GPUS = {"SLURM_JOB_ID": "42", "SLURM_GPUS_ON_NODE": "8"}


def test_one_task_per_node_on_one_gpu_of_eight_is_told_to_set_local_device_ids():
    line = unused_gpus_warning({**SLURM_NODE_OF_8_GPUS, "SLURM_STEP_TASKS_PER_NODE": "1(x4)"}, 1)
    assert "uses 1 of the 8 GPUs" in line and "JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7" in line


def test_layouts_that_use_every_gpu_are_left_alone():
    assert unused_gpus_warning({**SLURM_NODE_OF_8_GPUS, "SLURM_STEP_TASKS_PER_NODE": "8(x2)"}, 1) is None
    assert unused_gpus_warning({**SLURM_NODE_OF_8_GPUS, "SLURM_STEP_TASKS_PER_NODE": "1"}, 8) is None
    assert unused_gpus_warning({**SLURM_NODE_OF_8_GPUS, "JAX_LOCAL_DEVICE_IDS": "0"}, 1) is None
    assert unused_gpus_warning({"SLURM_JOB_ID": "42"}, 1) is None  # a CPU-only job step
    assert unused_gpus_warning({"SLURM_GPUS_ON_NODE": "8"}, 1) is None  # not under Slurm
