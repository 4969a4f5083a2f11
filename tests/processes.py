"""Running the project's entry points as real child processes in tests: CPU devices per process,
and waiting with a deadline that kills every child."""
import os
import time

RUN_DEADLINE_SECONDS = 300


def devices_env(count: int) -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"}


def finish(processes, deadline=RUN_DEADLINE_SECONDS):
    """Wait for every process (killing all at the deadline); their (code, stderr)."""
    end = time.monotonic() + deadline
    outputs = []
    try:
        for process in processes:
            _, err = process.communicate(timeout=max(1.0, end - time.monotonic()))
            outputs.append((process.returncode, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return outputs


def wait_for(condition, what, deadline=RUN_DEADLINE_SECONDS):
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)
