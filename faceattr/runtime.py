"""Where a run executes: device choice, mixed precision, the DDP process group of torchrun, worker pools."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.pool
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """The device for ``train.device`` (``auto`` takes this rank's GPU when there is one).

    >>> select_device("cpu")
    device(type='cpu')
    """
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from faceattr.errors import ConfigError

        raise ConfigError("train.device: 'cuda' was asked for but no CUDA GPU is available; use auto or cpu")
    return torch.device("cuda", local_rank)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision on GPU (bfloat16 where supported, else float16); a no-op on CPU."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A loss scaler that is active only for float16 autocast (bfloat16 and CPU need none)."""
    needed = enabled and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda", enabled=needed)


@dataclass(frozen=True)
class World:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: Global rank, 0 for the process that writes files and logs.
        size: Number of processes.
        local_rank: Rank on this machine (selects the GPU).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1


def init_world(device_kind: str) -> World:
    """Joins the process group torchrun describes in the environment, if any.

    Args:
        device_kind: ``"cuda"`` (NCCL backend) or ``"cpu"`` (gloo backend).

    Returns:
        This process's place; ``World()`` when not launched by torchrun.

    >>> init_world("cpu") if "WORLD_SIZE" not in os.environ else World()
    World(rank=0, size=1, local_rank=0)
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device_kind == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return world


def close_world(world: World) -> None:
    """Leaves the process group (a no-op for single-process runs)."""
    if world.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather_in_rank_order(value: Any, world: World) -> list[Any]:
    """Every rank's ``value``, ordered by rank, on every rank (``[value]`` when alone)."""
    if not world.is_distributed:
        return [value]
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_from_main(value: Any, world: World) -> Any:
    """Rank 0's ``value`` on every rank, so that all ranks take the same decision."""
    if not world.is_distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def configure_logging(level: int | None = None) -> None:
    """Plain timestamped log lines for the command-line tools; ranks other than 0 log warnings only."""
    if level is None:
        level = logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def all_ranks_have(flag: bool, world: World) -> bool:
    """True when ``flag`` holds on every rank (``flag`` itself when alone)."""
    if not world.is_distributed:
        return flag
    value = torch.tensor(int(flag), device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def share_buffers_from_main(model: torch.nn.Module, world: World) -> None:
    """Copies rank 0's parameters and buffers (BatchNorm statistics, EMA weights) to every rank."""
    if not world.is_distributed:
        return
    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Runs torch on one thread in the block, then restores the caller's setting.

    MTCNN on photos of a few hundred pixels gains little from more threads, and loses a lot
    when the cores are busy: on 2 shared cores under load, 30 CelebA photos took 2.4 s with
    one thread and 13 s with two (OpenMP threads waiting on each other).

    >>> with one_torch_thread():
    ...     torch.get_num_threads()
    1
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def spawn_pool(processes: int, initializer: Callable[..., None] | None = None,
               initargs: tuple[Any, ...] = ()) -> multiprocessing.pool.Pool:
    """A pool of ``processes`` spawned workers, each running torch on one thread.

    Spawned, not forked: forking a process whose torch thread pool has started can deadlock.
    One torch thread each, as the processes are the parallelism: more would only make the
    workers' OpenMP threads wait on each other for the same cores.

    Args:
        processes: How many worker processes.
        initializer: Called in each worker after the thread setting, with ``initargs``
            (a module-level function, as spawned workers import it).
        initargs: Its arguments (picklable).

    Returns:
        The pool; use it as a context manager so that it is closed.

    >>> with spawn_pool(1) as pool:  # doctest: +SKIP
    ...     pool.map(abs, [-1, 2])
    [1, 2]
    """
    return multiprocessing.get_context("spawn").Pool(processes, initializer=_start_worker,
                                                     initargs=(initializer, initargs))


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    """Pool initializer of :func:`spawn_pool`: one torch thread, then the caller's own initializer."""
    torch.set_num_threads(1)
    if initializer is not None:
        initializer(*initargs)
