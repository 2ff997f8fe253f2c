"""Process-group setup that works the same on one CPU, one GPU, several GPUs and several nodes.

DeepSpeed's launcher sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_*``; a plain ``python train.py`` gets a
one-process group here (without it DeepSpeed looks for MPI and fails). On a machine without CUDA we select DeepSpeed's
CPU accelerator and the gloo backend, so the training code path tested on CPU is the one that runs on GPUs.
"""

from __future__ import annotations

import os
import socket

import torch


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_environment(prefer_cpu: bool | None = None) -> str:
    """Fill in single-process rendezvous variables when absent; return ``"cuda"`` or ``"cpu"``.

    Must run before ``import deepspeed`` (it reads ``DS_ACCELERATOR`` at import).
    """
    device = "cpu" if prefer_cpu or not torch.cuda.is_available() else "cuda"
    if device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    return device


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0
