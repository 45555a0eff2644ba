"""DistributedDataParallel on CPU (gloo): 2 processes on half batches give the weights of 1 process on the
global batch, and metrics are reduced over processes."""
import os
import socket
import sys

import torch
import torch.multiprocessing as mp
import torch.nn as nn
from spikingjelly.activation_based import layer
from torch.utils.data import TensorDataset

from sj_sew import training
from sj_sew.neurons import NeuronSpec

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
