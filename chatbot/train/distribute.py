"""tf.distribute strategies for training: one device, all local devices, several hosts.

    default      one device (TensorFlow's default strategy)
    mirrored     MirroredStrategy over every local GPU (the CPU when there is none)
    multiworker  MultiWorkerMirroredStrategy over the hosts named in TF_CONFIG

`CHATBOT_CPU_REPLICAS=N` splits the CPU into N logical devices for `mirrored`: that is how
tests (and anyone without GPUs) exercise the mirrored path.
"""

from __future__ import annotations

import json
import os
from typing import Any

from chatbot.errors import ChatbotError
from chatbot.train.options import STRATEGIES

__all__ = ["STRATEGIES", "is_chief", "make_strategy", "worker_shard"]


def make_strategy(name: str) -> Any:
    """The tf.distribute strategy called `name`; create it before any other TensorFlow op."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = _cpu_replicas(tf)
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ChatbotError(f"--strategy {name}: choose one of {', '.join(STRATEGIES)}")


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the model directory (the only one that does)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    # Without a "chief" task, worker 0 is the chief (TensorFlow's convention).
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_shard(strategy: Any) -> tuple[int, int]:
    """(this host's index, hosts): the chief first, then the workers in TF_CONFIG's
    order; (0, 1) on one host. Each host reads that share of the token cache."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 0, 1
    cluster = resolver.cluster_spec().as_dict()
    chiefs = len(cluster.get("chief", []))
    hosts = chiefs + len(cluster.get("worker", []))
    if resolver.task_type == "chief":
        return 0, hosts
    return chiefs + int(resolver.task_id), hosts


def _cpu_replicas(tf: Any) -> list[str] | None:
    raw = os.environ.get("CHATBOT_CPU_REPLICAS")
    if not raw:
        return None
    try:
        count = int(raw)
        if count < 1:
            raise ValueError
    except ValueError:
        raise ChatbotError(f"CHATBOT_CPU_REPLICAS={raw!r}: give a whole number >= 1") from None
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        raise ChatbotError("CHATBOT_CPU_REPLICAS: TensorFlow was already started in this "
                           "process; set it before the first training run") from None
    return [f"/cpu:{i}" for i in range(count)]


def _check_tf_config() -> None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ChatbotError("--strategy multiworker: set TF_CONFIG on every host (see the "
                           "README's 'Training on several hosts')")
    try:
        config = json.loads(raw)
        workers = config["cluster"]
        task = config["task"]
        if not isinstance(workers, dict) or not isinstance(task, dict):
            raise TypeError
        task["type"], task["index"]  # noqa: B018  both must be there
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ChatbotError('TF_CONFIG: expected {"cluster": {"worker": [...]}, '
                           '"task": {"type": "worker", "index": N}}') from None
