"""What the crash-test job scripts share: a checkpointing environment that never restarts a
failed job itself (the test restarts the process), and the JSON line the tests read."""

from __future__ import annotations

import json

from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment


def checkpointing_env(interval_ms: int, storage_dir: str) -> StreamExecutionEnvironment:
    """Parallelism 2, a checkpoint every ``interval_ms`` into ``storage_dir``, which a run
    of the script resumes from."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2).enable_checkpointing(interval_ms)
    env.get_checkpoint_config().set_checkpoint_storage_dir(storage_dir)
    env.set_restart_strategy(RestartStrategies.no_restart())
    return env


def run_and_report(env: StreamExecutionEnvironment, job_name: str) -> None:
    """Run the job to its end, then print the checkpoint it restored from (or null) and how
    many records it read."""
    client = env.execute_async(job_name)
    result = client.wait()
    report = {
        "restored_from": client.metrics().restored_checkpoint_id,
        "records_in": result.records_in,
    }
    print(json.dumps(report))
