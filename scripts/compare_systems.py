#!/usr/bin/env python
"""Measure the competing residual SNNs on real data, in bounded CPU time, and write results/systems.json.

1. MS-ResNet accuracy vs depth (CIFAR-style ms_resnet, depths 8/20/56 by default): does depth hurt?
2. Spiking DS-ResNet with MLF (K = 3) vs the same network with single-level neurons (K = 1).
3. ANN-to-SNN conversion curve: S-ResNet (sj_sew.conversion) vs SpikingJelly's ann2snn, accuracy vs T.

    python scripts/compare_systems.py                       # digits, T = 4, 15 epochs, seed 0: ~15 min on 1 core
    python scripts/compare_systems.py --dataset fashion_mnist --train-size 5000 --test-size 1000 --epochs 5

Every number is stored next to its exact setting (data, sizes, epochs, T, seed, optimizer). 10 % of each class
of the training split is held out to validate (the same for every seed); reported are the test accuracy at the
epoch with the best validation accuracy and at the last epoch. The test split selects nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sj_sew  # noqa: E402
from convert import DATASETS, load_tensors, plot, run_conversion  # noqa: E402
from sj_sew.data.split import validation_split  # noqa: E402
from sj_sew.training import fit, make_optimizer, make_scheduler  # noqa: E402

VAL_FRACTION = 0.1


def train_snn(model: str, model_kwargs: dict, data, T: int, epochs: int, lr: float, batch_size: int, seed: int,
              label: str) -> dict:
    """Adam + cosine schedule, cross-entropy on the mean-over-T logits (sj_sew.training.fit); validation and
    test accuracy after every epoch; the epoch is selected by validation accuracy (the earliest on ties)."""
    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(seed)
    net = sj_sew.create_model(model, num_classes=int(y_tr.max()) + 1, in_channels=x_tr.shape[1], T=T, **model_kwargs)
    g = torch.Generator().manual_seed(seed)
    train_set, val_set = validation_split(TensorDataset(x_tr, y_tr), VAL_FRACTION)
    train = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=g)
    val = DataLoader(val_set, batch_size=500)
    test = DataLoader(TensorDataset(x_te, y_te), batch_size=500)
    opt = make_optimizer("adam", net.parameters(), lr)
    started = time.time()
    with tqdm(total=epochs, desc=label, leave=False) as bar:
        records = fit(net, train, opt, make_scheduler("cosine", opt, epochs), epochs=epochs, test_loader=test,
                      val_loader=val, on_epoch=lambda _: bar.update())
    selected = max(records, key=lambda r: (r["val_acc"], -r["epoch"]))
    test_acc = [r["test_acc"] for r in records]
    result = {"model": model, "kwargs": model_kwargs, "depth": getattr(net, "depth", None),
              "params": sum(p.numel() for p in net.parameters()), "T": T, "epochs": epochs, "seed": seed,
              "train_size": len(train_set), "val_size": len(val_set),
              "selected_epoch": selected["epoch"], "selected_test_accuracy": selected["test_acc"],
              "final_test_accuracy": test_acc[-1], "final_train_accuracy": records[-1]["train_acc"],
              "val_accuracy_per_epoch": [r["val_acc"] for r in records], "test_accuracy_per_epoch": test_acc,
              "seconds": round(time.time() - started, 1)}
    print(f"{label}: test {selected['test_acc']:.4f} at the validation-selected epoch {selected['epoch']}, "
          f"{test_acc[-1]:.4f} at the last ({result['seconds']:.0f} s)", flush=True)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--ms-depths", type=int, nargs="+", default=[8, 20, 56])
    p.add_argument("--ds-depth", type=int, default=20)
    p.add_argument("--ds-widths", type=int, nargs=3, default=(16, 32, 64))
    p.add_argument("--conversion-time-steps", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    p.add_argument("--conversion-epochs", type=int, default=15)
    p.add_argument("--skip", nargs="*", default=[], choices=["depth", "mlf", "conversion"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("results/systems.json"))
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_tensors(args.dataset, args.train_size, args.test_size, seed=0)
    common = {"dataset": args.dataset, "train_size": len(data[1]), "test_size": len(data[3]),
              "validation": f"{VAL_FRACTION} of each class of the training split, selects the epoch", "T": args.T,
              "epochs": args.epochs, "optimizer": f"Adam lr {args.lr}, cosine to 0", "batch_size": args.batch_size,
              "input": "static image, stem run once and repeated over T", "loss": "cross-entropy on mean-over-T logits",
              "spikingjelly_version": sj_sew.SJ_VERSION, "torch_threads": args.threads}
    report = {"command": "python scripts/compare_systems.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "setting": common, "note": "reduced setting: small real data set, few epochs, CPU; not the papers' runs"}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        args.out.write_text(json.dumps(report, indent=2))

    if "depth" not in args.skip:
        report["ms_resnet_depth"] = [
            train_snn("ms_resnet", {"depth": d}, data, args.T, args.epochs, args.lr, args.batch_size, seed,
                      f"ms_resnet depth {d} seed {seed}")
            for d in args.ms_depths for seed in args.seeds]
        save()
    if "mlf" not in args.skip:
        report["ds_resnet_mlf"] = [
            train_snn("ds_resnet", {"depth": args.ds_depth, "levels": k, "widths": list(args.ds_widths)}, data, args.T,
                      args.epochs, args.lr, args.batch_size, seed, f"ds_resnet{args.ds_depth} K={k} seed {seed}")
            for k in (3, 1) for seed in args.seeds]
        save()
    if "conversion" not in args.skip:
        result = run_conversion(args.dataset, args.train_size, args.test_size, epochs=args.conversion_epochs,
                                time_steps=args.conversion_time_steps, seed=args.seeds[0], progress=False)
        report["conversion"] = result
        plot(result, args.out.with_name(args.out.stem + "_conversion.png"))
        save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
