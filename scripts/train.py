#!/usr/bin/env python
"""Train any sj_sew model on any registered data set.

    python scripts/train.py                                   # the quick start: SEW ResNet on the embedded event set
    python scripts/train.py --preset dvs128_gesture --data-root DIR --connect IAND
    python scripts/train.py --dataset digits --model sew_resnet18 --T 4 --epochs 10
    python scripts/train.py --resume --out runs/quickstart-20261124-030000   # continue an interrupted run
    torchrun --nproc_per_node 2 scripts/train.py --preset imagenet --data-root /data/imagenet

A preset holds one of the SEW paper's recipes (Tables 7 and 8); every flag given explicitly overrides it.
Each epoch writes <out>/metrics.jsonl (and TensorBoard logs when available) and an atomic checkpoint
<out>/checkpoint.pt carrying the whole run configuration; <out>/best.pt holds the best test accuracy's
weights, and <out>/curves.png the training curves at the end.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import sj_sew  # noqa: E402
from sj_sew import training  # noqa: E402
from sj_sew.blocks import FAMILIES  # noqa: E402
from sj_sew.data import build_dataset, dataset_info, list_datasets  # noqa: E402
from sj_sew.models import PAPER_NETS  # noqa: E402
from sj_sew.neurons import _SURROGATES  # noqa: E402

#: The quick start's net: a 7B-Net-like SEW ResNet (ADD) for the 16x16 emulated sensor (3 blocks, 16 -> 2 pixels).
QUICKSTART_NET = "c16k3s1-BN-PLIF-{SEW Block(c16)-MPk2s2}*3-FC10"

#: Defaults under every preset.
BASE = dict(
    dataset="events", data_root=None, download=False, data_options={}, model=None, notation=None, family=None,
    connect=None, neuron=None, surrogate=None, T=None, T_train=None, lr=0.1, optimizer="sgd", momentum=0.9,
    weight_decay=0.0, scheduler="cosine", step_size=64, gamma=0.1, epochs=10, batch_size=32, amp=False,
    zero_init=False, seed=0, out=None, workers=0, device=None, threads=None, sync_bn=False, memory_saving=False,
    tensorboard=True, progress=True,
)

#: SEW paper, Table 8: learning rate of each network on DVS128 Gesture (SEW by g, else by family).
DVS_GESTURE_LR = {"ADD": 0.001, "AND": 0.03, "IAND": 0.063, "spiking": 0.1, "plain": 0.005}

PRESETS = {
    # the main job: seconds to build the data, a few minutes to train on 2 CPU cores, >= 90% test accuracy
    # (one intra-op thread: these small convs gain little from more, and spinning OpenMP threads slow to a
    # crawl when other jobs share the CPU)
    "quickstart": dict(dataset="events", notation=QUICKSTART_NET, T=4, optimizer="adam", lr=0.003,
                       scheduler="cosine", epochs=10, batch_size=16, zero_init=True, threads=1),
    # Tables 7 and 8: 7B-Net, T = 16, random temporal delete to 12, SGD, StepLR(64, 0.1), 192 epochs
    "dvs128_gesture": dict(dataset="dvs128_gesture", model="net7b", T=16, T_train=12, optimizer="sgd",
                           momentum=0.9, lr=None, scheduler="step", step_size=64, gamma=0.1, epochs=192,
                           batch_size=16, amp=True, workers=4),
    # Tables 6 and 7: Wide-7B-Net, SGD 0.01, cosine T_max = 64, 64 epochs, no random temporal delete
    "cifar10_dvs": dict(dataset="cifar10_dvs", model="wide_net7b", T=16, optimizer="sgd", momentum=0.9,
                        lr=0.01, scheduler="cosine", epochs=64, batch_size=16, workers=4),
    # Table 7 and Sec. 4.1: SEW ResNet with IF neurons, T = 4, SGD 0.1, cosine T_max = 320, 320 epochs, AMP
    "imagenet": dict(dataset="imagenet", model="sew_resnet18", neuron="if", T=4, optimizer="sgd", momentum=0.9,
                     lr=0.1, scheduler="cosine", epochs=320, batch_size=32, amp=True, workers=8),
    # Appendix A.5 (Table 9): the lightweight CIFAR-10 net; the paper tunes lr per surrogate and does not give
    # T, epochs or batch size: these values are our choice
    "cifar10_surrogate": dict(dataset="cifar10", model="surrogate_net", T=4, optimizer="sgd", momentum=0.9,
                              lr=0.1, scheduler="cosine", epochs=64, batch_size=64, workers=4),
}

#: Data sets that can be downloaded (only with --download), and the builder option that allows it.
DOWNLOAD_OPTION = {"cifar10": "download", "dvs128_gesture": "allow_download", "cifar10_dvs": "allow_download"}

#: Flags that may differ from the checkpoint's configuration when resuming.
RESUME_MAY_CHANGE = ("epochs", "workers", "device", "threads", "out", "progress", "tensorboard")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Unset flags take the preset's value (default preset: quickstart).")
    a = p.add_argument
    a("--preset", choices=sorted(PRESETS), help="a recipe of the SEW paper (default: quickstart)")
    a("--dataset", choices=list_datasets())
    a("--data-root", help="directory of the data set's files (cifar10, imagenet, dvs128_gesture, cifar10_dvs)")
    a("--download", action="store_true", default=None, help="allow downloading the data set (never by default)")
    a("--data-option", action="append", metavar="KEY=VALUE", dest="data_options",
      help="extra data set option, e.g. source=fashion_mnist for the events set (repeatable)")
    a("--model", choices=sj_sew.list_models(), help="a registered model")
    a("--notation", help="build a NotationNet from the paper's notation instead of --model")
    a("--family", choices=list(FAMILIES), help="block family of notation nets")
    a("--connect", choices=sj_sew.list_connects(), help="g of SEW blocks")
    a("--neuron", choices=sj_sew.list_neurons())
    a("--surrogate", choices=sorted(_SURROGATES), help="surrogate gradient (default ATan, alpha = 2)")
    a("--T", type=int, help="time steps (frames of event data; repeats of static images)")
    a("--T-train", type=int, dest="T_train", help="random temporal delete: train on T_train of T frames")
    a("--lr", type=float)
    a("--optimizer", choices=list(training.OPTIMIZERS))
    a("--momentum", type=float)
    a("--weight-decay", type=float, dest="weight_decay")
    a("--scheduler", choices=list(training.SCHEDULERS))
    a("--step-size", type=int, dest="step_size", help="StepLR period in epochs")
    a("--gamma", type=float, help="StepLR factor")
    a("--epochs", type=int)
    a("--batch-size", type=int, dest="batch_size", help="per process")
    a("--amp", action=argparse.BooleanOptionalAction, help="float16 autocast + GradScaler (CUDA only)")
    a("--zero-init", action=argparse.BooleanOptionalAction, dest="zero_init",
      help="start every residual block as an identity mapping")
    a("--seed", type=int)
    a("--out", help="run directory (default runs/<preset>-<time>)")
    a("--resume", nargs="?", const="", metavar="CHECKPOINT_OR_DIR",
      help="continue from a checkpoint (default: <out>/checkpoint.pt)")
    a("--memory-saving", action="store_true", default=None, dest="memory_saving",
      help="gradient checkpointing via sj_sew.perf.memory_saving")
    a("--workers", type=int)
    a("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    a("--threads", type=int, help="torch intra-op CPU threads (default: torch's choice)")
    a("--sync-bn", action="store_true", default=None, dest="sync_bn", help="SyncBatchNorm under torchrun (CUDA)")
    a("--tensorboard", action=argparse.BooleanOptionalAction)
    a("--progress", action=argparse.BooleanOptionalAction, help="tqdm progress bars")
    return p


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def resolve_config(args: argparse.Namespace, parser: argparse.ArgumentParser, saved: dict | None = None) -> dict:
    """BASE <- preset (or the checkpoint's config when resuming) <- explicitly given flags; then checked."""
    explicit = {k: v for k, v in vars(args).items() if v is not None and k not in ("resume", "preset")}
    if "data_options" in explicit:
        pairs = explicit["data_options"]
        bad = [s for s in pairs if "=" not in s]
        if bad:
            parser.error(f"--data-option takes KEY=VALUE, got {bad}")
        explicit["data_options"] = {k: _parse_value(v) for k, v in (s.split("=", 1) for s in pairs)}
    if saved is not None:
        if args.preset is not None and args.preset != saved["preset"]:
            parser.error(f"--preset {args.preset} differs from the checkpoint's preset {saved['preset']}")
        changed = sorted(k for k, v in explicit.items() if k not in RESUME_MAY_CHANGE and saved.get(k) != v)
        if changed:
            parser.error(f"cannot change {changed} when resuming (only {list(RESUME_MAY_CHANGE)}); "
                         "start a new run with a new --out instead")
        cfg = {**saved, **explicit}
    else:
        preset = args.preset or "quickstart"
        cfg = {**BASE, **PRESETS[preset], **explicit, "preset": preset}
        if "model" in explicit and "notation" not in explicit:  # one picks the net; the other's preset value goes
            cfg["notation"] = None
        if "notation" in explicit and "model" not in explicit:
            cfg["model"] = None
        if cfg["lr"] is None and cfg["preset"] == "dvs128_gesture":
            family = cfg["family"] or "sew"
            cfg["lr"] = DVS_GESTURE_LR[(cfg["connect"] or "ADD").upper() if family == "sew" else family]
    check_config(cfg, parser)
    return cfg


def check_config(cfg: dict, parser: argparse.ArgumentParser) -> None:
    """Every error that would otherwise surface after the data or the model were built."""
    info = dataset_info(cfg["dataset"])
    if cfg["model"] is None and cfg["notation"] is None:
        parser.error(f"give --model (one of {sj_sew.list_models()}) or --notation")
    if cfg["model"] is not None and cfg["notation"] is not None:
        parser.error("give either --model or --notation, not both")
    if cfg["family"] is not None and cfg["notation"] is None and cfg["model"] not in PAPER_NETS:
        parser.error(f"--family applies to notation nets ({sorted(PAPER_NETS)} or --notation); for ResNets choose "
                     f"the family by name, e.g. --model {cfg['model'].replace('sew_', 'spiking_')}")
    for key in ("epochs", "batch_size", "step_size"):
        if cfg[key] < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {cfg[key]}")
    if cfg["lr"] is None or cfg["lr"] <= 0:
        parser.error(f"--lr must be > 0, got {cfg['lr']}")
    if cfg["workers"] < 0:
        parser.error(f"--workers must be >= 0, got {cfg['workers']}")
    if cfg["threads"] is not None and cfg["threads"] < 1:
        parser.error(f"--threads must be >= 1, got {cfg['threads']}")
    T = cfg["T"] if cfg["T"] is not None else info.default_T
    if T is None or T < 1:
        parser.error(f"--T must be >= 1 (static data set {cfg['dataset']!r} needs it), got {cfg['T']}")
    if cfg["T_train"] is not None:
        if not info.sequence:
            parser.error(f"--T-train (random temporal delete) applies to sequence data sets, not {cfg['dataset']!r}")
        if not 1 <= cfg["T_train"] <= T:
            parser.error(f"--T-train must be in [1, T={T}], got {cfg['T_train']}")
    if cfg["download"] and cfg["dataset"] not in DOWNLOAD_OPTION:
        parser.error(f"--download applies to {sorted(DOWNLOAD_OPTION)}; {cfg['dataset']!r} is embedded or never downloaded")
    if info.needs_root and not cfg["data_root"]:
        parser.error(f"data set {cfg['dataset']!r} is not embedded: give --data-root DIR with its files")
    if cfg["sync_bn"] and (cfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cpu"):
        parser.error("--sync-bn needs CUDA: PyTorch's SyncBatchNorm does not run on CPU")
    if cfg["memory_saving"]:
        memory_saving_fn()


def memory_saving_fn():
    try:
        from sj_sew.perf import memory_saving
    except ImportError as e:
        raise SystemExit(f"--memory-saving needs sj_sew.perf.memory_saving, which is not available here ({e})")
    return memory_saving


def main(argv: list[str] | None = None) -> dict:
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    saved_state = None
    if args.resume is not None:
        target = Path(args.resume or args.out or "")
        if not (args.resume or args.out):
            parser.error("--resume needs a checkpoint or run directory: --resume PATH, or --resume with --out DIR")
        path = target / "checkpoint.pt" if target.is_dir() or not target.suffix else target
        if not path.is_file():
            parser.error(f"no checkpoint at {path}")
        saved_state = training.load_checkpoint(path)
        if args.out is None:
            args.out = str(path.parent)
    cfg = resolve_config(args, parser, saved_state["config"] if saved_state else None)
    if cfg["out"] is None:
        cfg["out"] = str(Path("runs") / f"{cfg['preset']}-{datetime.now():%Y%m%d-%H%M%S}")
    out = Path(cfg["out"])
    if saved_state is None and (out / "checkpoint.pt").exists():
        parser.error(f"{out} already holds a run; continue it with --resume or choose another --out")

    if cfg["threads"] is not None:
        torch.set_num_threads(cfg["threads"])
    env = training.init_distributed(cfg["device"])
    if env.is_main:
        print(f"config: {cfg}", flush=True)
    training.seed_everything(cfg["seed"])
    info = dataset_info(cfg["dataset"])
    data_kwargs = dict(root=cfg["data_root"], T=cfg["T"], **cfg["data_options"])
    if cfg["download"]:
        data_kwargs[DOWNLOAD_OPTION[cfg["dataset"]]] = True
    train_set = build_dataset(cfg["dataset"], True, **data_kwargs)
    test_set = build_dataset(cfg["dataset"], False, **data_kwargs)
    classes = getattr(train_set, "classes", None)
    num_classes = len(classes) if classes else info.num_classes
    train_loader, test_loader = training.make_loaders(train_set, test_set, cfg["batch_size"], env, cfg["seed"],
                                                      cfg["workers"])

    cfg["num_classes"], cfg["input_size"] = num_classes, int(train_set[0][0].shape[-1])  # what the data holds
    model = training.model_from_config(cfg).to(env.device)
    if cfg["memory_saving"]:
        model = memory_saving_fn()(model)
    if cfg["sync_bn"] and env.distributed:
        model = training.convert_sync_batchnorm(model)
    if env.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    net = training.unwrap(model)
    optimizer = training.make_optimizer(cfg["optimizer"], model.parameters(), cfg["lr"], cfg["momentum"],
                                        cfg["weight_decay"])
    scheduler = training.make_scheduler(cfg["scheduler"], optimizer, cfg["epochs"], cfg["step_size"], cfg["gamma"])
    use_amp = cfg["amp"] and env.device.type == "cuda"
    if cfg["amp"] and not use_amp and env.is_main:
        print("note: --amp needs CUDA; training in float32 on", env.device, flush=True)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    history, best, start_epoch = [], {"acc": -1.0, "epoch": -1}, 0
    if saved_state is not None:
        net.load_state_dict(saved_state["model"])
        optimizer.load_state_dict(saved_state["optimizer"])
        scheduler.load_state_dict(saved_state["scheduler"])
        scaler.load_state_dict(saved_state["scaler"])
        history, best, start_epoch = saved_state["history"], saved_state["best"], saved_state["epoch"] + 1
        training.set_rng_state(saved_state["rng"])
        if env.is_main:
            print(f"resumed from {out / 'checkpoint.pt'} at epoch {start_epoch}", flush=True)
    log = training.MetricsLog(out, history, cfg["tensorboard"]) if env.is_main else None
    n_params = sum(p.numel() for p in net.parameters())
    if env.is_main:
        print(f"{cfg['dataset']}: {len(train_set)} train / {len(test_set)} test; model "
              f"{cfg['model'] or cfg['notation']} ({n_params} parameters) on {env.device} x {env.world_size}", flush=True)

    for epoch in range(start_epoch, cfg["epochs"]):
        tick = time.time()
        train_loader.sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        try:
            train_stats = training.train_one_epoch(model, train_loader, optimizer, env, scaler=scaler, amp=use_amp,
                                                   T_train=cfg["T_train"], epoch=epoch, progress=cfg["progress"])
        except training.NonFiniteLossError as e:
            kept = (f"the last good checkpoint is {out / 'checkpoint.pt'} (epoch {epoch - 1})" if epoch > 0
                    else "no checkpoint was written")
            raise SystemExit(f"stopping: {e}; {kept}. Lower --lr or use --zero-init, then start again "
                             f"(or --resume from that checkpoint).") from None
        test_stats = training.evaluate(model, test_loader, env, amp=use_amp, progress=cfg["progress"])
        scheduler.step()
        record = {"epoch": epoch, "train_loss": train_stats["loss"], "train_acc": train_stats["acc"],
                  "test_loss": test_stats["loss"], "test_acc": test_stats["acc"],
                  "firing_rate": test_stats["firing_rate"], "lr": lr, "epoch_time": time.time() - tick}
        history.append(record)
        improved = record["test_acc"] > best["acc"]
        if improved:
            best = {"acc": record["test_acc"], "epoch": epoch}
        if env.is_main:
            log.log(record)
            state = {"config": cfg, "epoch": epoch, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": training.rng_state(),
                     "history": history, "best": best, "sj_sew_version": sj_sew.__version__,
                     "spikingjelly_version": sj_sew.SJ_VERSION}
            training.save_checkpoint(state, out / "checkpoint.pt")
            if improved:
                training.save_checkpoint({"config": cfg, "epoch": epoch, "model": net.state_dict(), "best": best},
                                         out / "best.pt")
            print(f"epoch {epoch}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.4f} | test loss "
                  f"{record['test_loss']:.4f} acc {record['test_acc']:.4f} | firing {record['firing_rate']:.4f} | "
                  f"lr {lr:.3g} | {record['epoch_time']:.1f}s", flush=True)

    summary = {"last_test_acc": history[-1]["test_acc"] if history else None, "best_test_acc": best["acc"],
               "best_epoch": best["epoch"], "epochs": len(history), "out": str(out),
               "metrics": str(out / "metrics.jsonl"), "plot": str(out / "curves.png"),
               "checkpoint": str(out / "checkpoint.pt"), "wall_time_s": time.time() - started}
    if env.is_main:
        log.close()
        if history:
            training.plot_curves(history, out / "curves.png", title=f"{cfg['preset']}: {cfg['model'] or cfg['notation']}")
        print(f"test accuracy: last {summary['last_test_acc']:.4f}, best {best['acc']:.4f} (epoch {best['epoch']})\n"
              f"metrics: {summary['metrics']}\nplot: {summary['plot']}\ncheckpoint: {summary['checkpoint']} "
              f"(best weights: {out / 'best.pt'})\nwall time: {summary['wall_time_s']:.0f}s", flush=True)
    if env.distributed:
        torch.distributed.destroy_process_group()
    return summary


if __name__ == "__main__":
    main()
