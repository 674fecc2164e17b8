"""Kafka -> map -> Kafka, the job the sink's crash tests kill over and over.

    python sink_crash_job.py BOOTSTRAP INPUT OUTPUT GUARANTEE PREFIX CHECKPOINT_DIR [RATE]

Reads INPUT from the earliest offset up to the end it has when the job first starts
(bounded), maps each value ``v`` to ``"v:mapped"``, and writes OUTPUT with the given
delivery guarantee, checkpointing every 500 ms into CHECKPOINT_DIR. Re-running the same
command after a crash resumes from the checkpoints there. RATE (records/s per subtask,
0 = unlimited) slows the map down so a driver has time to kill the job many times. The
pipeline is tests/kafka_job_support.py's, which the runtime tests build in-process too.

With STREAMPLUG_TEST_RUNTIME=processes (or ray) the subtasks run in worker processes (Ray
actors, on the cluster RAY_ADDRESS names); the script then prints ``WORKERS pid pid``
whenever the set of worker processes changes, so a test can kill one of them. Worker
processes inherit STREAMPLUG_FAULT_POINTS; Ray actors get it through their runtime
environment, so ``name@W`` fault points work on both.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

# The tests' shared job (tests/kafka_job_support.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import kafka_job_support
from kafka_job_support import Throttle, add_kafka_job

from streamplug.api.sink import DeliveryGuarantee
from streamplug.runtime import RestartStrategies, StreamExecutionEnvironment, faults


def main() -> int:
    bootstrap, source_topic, sink_topic, guarantee, prefix, checkpoint_dir = sys.argv[1:7]
    rate = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("streamplug_kafka_sink").setLevel(logging.INFO)
    logging.getLogger("streamplug.runtime").setLevel(logging.INFO)

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(500)
    env.get_checkpoint_config().set_checkpoint_storage_dir(checkpoint_dir)
    env.get_checkpoint_config().set_checkpoint_timeout(60_000)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(3, 200))
    # The reader shrinks batches for slow work by itself, but its first batch after each
    # restart (500 records) would still take 0.5 s at RATE; 100-record polls let even a
    # short run reach a checkpoint.
    add_kafka_job(
        env,
        bootstrap,
        source_topic,
        sink_topic,
        prefix,
        guarantee=DeliveryGuarantee.parse(guarantee),
        map_function=Throttle(rate),
        poll_max_records=100 if rate else 10_000,
    )
    runtime = os.environ.get("STREAMPLUG_TEST_RUNTIME", "threads")
    if runtime == "ray":
        import cloudpickle

        # The Ray nodes' workers have neither this script's directory nor tests/ on
        # their path: the job's classes travel by value.
        cloudpickle.register_pickle_by_value(kafka_job_support)
        plan = os.environ.get(faults.ENV)
        env.set_runtime(
            "ray", **({"runtime_env": {"env_vars": {faults.ENV: plan}}} if plan else {})
        )
    else:
        env.set_runtime(runtime)
    client = env.execute_async(f"sink-crash-{prefix}")
    shown: list[int] = []
    while not client.wait_quietly(0.05) and runtime != "threads":
        pids = client.worker_pids()
        if pids and pids != shown:
            shown = pids
            print("WORKERS " + " ".join(map(str, pids)), flush=True)
    result = client.wait()
    print(f"JOB FINISHED {result.job_id}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
