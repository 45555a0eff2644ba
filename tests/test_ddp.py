"""DistributedDataParallel on CPU (gloo): 2 processes on half batches give the weights of 1 process on the
global batch, metrics are reduced over processes, and with BatchNorm the evaluation judges the model that process
0 saves."""
import os
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
from spikingjelly.activation_based import layer
from torch.utils.data import TensorDataset

from sj_sew import training
from sj_sew.neurons import NeuronSpec
from sj_sew.training.distributed import broadcast_buffers, make_eval_loader

GLOBAL_BATCH, EPOCHS = 8, 2


def _tiny_snn() -> nn.Module:
    """conv - IF - pool - FC on [T, N, 2, 6, 6] (no BatchNorm: its batch statistics are per process)."""
    torch.manual_seed(0)
    return nn.Sequential(layer.Conv2d(2, 4, 3, padding=1, step_mode="m"), NeuronSpec("if").make(),
                         layer.AvgPool2d(2, 2, step_mode="m"), layer.Flatten(start_dim=1, step_mode="m"),
                         layer.Linear(36, 3, step_mode="m"), _MeanOverTime())


class _MeanOverTime(nn.Module):
    def forward(self, x):
        return x.mean(0)


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(16, 3, 2, 6, 6, generator=g) < 0.4).float()  # 16 samples, T=3
    return TensorDataset(x, torch.randint(0, 3, (16,), generator=g))


def _train(env: training.DistEnv, out_path: str) -> None:
    data = _data()
    model = _tiny_snn()
    if env.distributed:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = training.make_optimizer("sgd", model.parameters(), lr=0.5, momentum=0.9)
    train, test = training.make_loaders(data, data, GLOBAL_BATCH // env.world_size, env, seed=7)
    stats = []
    for epoch in range(EPOCHS):
        train.sampler.set_epoch(epoch)
        stats.append(training.train_one_epoch(model, train, optimizer, env, epoch=epoch, progress=False))
    stats.append(training.evaluate(model, test, env))
    if env.is_main:
        torch.save({"model": training.unwrap(model).state_dict(), "stats": stats}, out_path)


def _worker(rank: int, world_size: int, port: int, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    env = training.init_distributed("cpu")
    assert env.world_size == world_size and env.rank == rank
    _train(env, out_path)
    torch.distributed.destroy_process_group()
    # The worker's results are on disk and checked by the parent. Skip interpreter finalization: there, torch
    # 2.14's gloo threads intermittently abort the process ("terminate called without an active exception",
    # about 1 run in 10 on these machines, on both SpikingJelly lines) after all the work has finished.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path):
    single, double = str(tmp_path / "single.pt"), str(tmp_path / "double.pt")
    _train(training.DistEnv(), single)
    mp.spawn(_worker, args=(2, _free_port(), double), nprocs=2, join=True)
    a, b = torch.load(single, weights_only=True), torch.load(double, weights_only=True)
    changed = False
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-6)
        changed |= not torch.equal(a["model"][k], _tiny_snn().state_dict()[k])
    assert changed  # training moved the weights
    for sa, sb in zip(a["stats"], b["stats"]):  # loss/accuracy reduced over both processes = the global values
        assert sa.keys() == sb.keys()
        for key in sa:
            assert abs(sa[key] - sb[key]) < 1e-5, key


# ------------------------------------------------------------------------------------------ BatchNorm


def _bn_snn() -> nn.Module:
    """conv - BatchNorm - IF - pool - FC: without SyncBatchNorm each process updates the running statistics
    from its own half batch."""
    torch.manual_seed(0)
    return nn.Sequential(layer.Conv2d(2, 4, 3, padding=1, step_mode="m"), layer.BatchNorm2d(4, step_mode="m"),
                         NeuronSpec("if").make(), layer.AvgPool2d(2, 2, step_mode="m"),
                         layer.Flatten(start_dim=1, step_mode="m"), layer.Linear(36, 3, step_mode="m"),
                         _MeanOverTime())


def _bn_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    env = training.init_distributed("cpu")
    data = _data()
    model = nn.parallel.DistributedDataParallel(_bn_snn())
    optimizer = training.make_optimizer("sgd", model.parameters(), lr=0.5, momentum=0.9)
    train, test = training.make_loaders(data, data, GLOBAL_BATCH // world_size, env, seed=7)
    train.sampler.set_epoch(0)
    training.train_one_epoch(model, train, optimizer, env, progress=False)
    result = {"own_buffers": {k: v.clone() for k, v in training.unwrap(model).state_dict().items() if "running" in k}}
    result["evaluate"] = training.evaluate(model, test, env)  # what a run reports
    broadcast_buffers(model, env)
    result["synced_buffers"] = {k: v.clone() for k, v in training.unwrap(model).state_dict().items()
                                if "running" in k}
    result["evaluate_synced"] = training.evaluate(model, test, env)
    result["model"] = training.unwrap(model).state_dict()  # process 0's is what a run saves
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # see _worker


@pytest.fixture(scope="module")
def bn_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("bn")
    mp.spawn(_bn_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _saved_model_evaluated_alone(rank0: dict) -> dict:
    model = _bn_snn()
    model.load_state_dict(rank0["model"])
    return training.evaluate(model, make_eval_loader(_data(), GLOBAL_BATCH, training.DistEnv()))


def test_broadcast_buffers_gives_every_process_the_saved_statistics(bn_ranks):
    rank0, rank1 = bn_ranks
    key = next(iter(rank0["own_buffers"]))
    assert not torch.equal(rank0["own_buffers"][key], rank1["own_buffers"][key])  # the difference exists
    for k in rank0["synced_buffers"]:
        assert torch.equal(rank1["synced_buffers"][k], rank0["model"][k]), k
    alone = _saved_model_evaluated_alone(rank0)
    for k in alone:
        assert abs(rank0["evaluate_synced"][k] - alone[k]) < 1e-6, k


def test_distributed_evaluation_judges_the_saved_model(bn_ranks):
    """A run's reported validation and test numbers are those of process 0's weights and statistics: what
    checkpoint.pt holds and scripts/evaluate.py measures (loop.evaluate broadcasts the buffers first)."""
    alone = _saved_model_evaluated_alone(bn_ranks[0])
    for k in alone:
        assert abs(bn_ranks[0]["evaluate"][k] - alone[k]) < 1e-6, k
