#!/usr/bin/env python
"""Export a trained run to ONNX, TorchScript or NIR, and check the file against the PyTorch model.

    python scripts/export.py runs/<run> --format onnx          # <run>/model.onnx, checked with onnxruntime
    python scripts/export.py runs/<run>/checkpoint.pt --format torchscript --out net.pt
    python scripts/export.py runs/<run> --format nir --max-pool avg   # see README, "Deployment and export"

RUN_OR_CHECKPOINT is a checkpoint file or a run directory (its best.pt if it has one, else checkpoint.pt, as
``sj_sew.load_checkpoint`` reads it). The model is rebuilt from the checkpoint's configuration, BatchNorm is
folded, and the graph is written for the run's T (``--T`` overrides) and the data set's input size.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sj_sew import load_checkpoint  # noqa: E402
from sj_sew.training import CheckpointError  # noqa: E402
from sj_sew.data import dataset_info  # noqa: E402
from sj_sew.deploy import (export_onnx, export_torchscript, from_nir, inference_model, run_nir,  # noqa: E402
                           streaming, to_nir)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "nir": ".nir"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run directory or a checkpoint file")
    p.add_argument("--format", required=True, choices=sorted(FORMATS))
    p.add_argument("--out", help="output file (default: model.<ext> beside the checkpoint)")
    p.add_argument("--T", type=int, help="time steps the ONNX/TorchScript graph is unrolled for (default: the run's)")
    p.add_argument("--batch", type=int, default=1,
                   help="batch size of the check input (default 1); the ONNX graph takes any batch size")
    p.add_argument("--max-pool", default="error", choices=["error", "avg"],
                   help="NIR: refuse max pooling (default) or write average pooling instead (another network)")
    p.add_argument("--dt", type=float, default=1e-4, help="NIR: the time step in seconds (default 1e-4)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return export(args)
    except ValueError as e:  # what the format cannot express (NIR: max pooling, AND/IAND, MLF, soft reset)
        reason = str(e)
        if "max_pool_to_avg" in reason:  # the library's advice is Python's; this command's is its flag
            reason = reason.split(" Export the average-pooling")[0] + (
                " Write average pooling instead with --max-pool avg (another network: fine-tune it first).")
        raise SystemExit(f"cannot export {args.run} to {args.format}: {reason}") from None
    except CheckpointError as e:
        raise SystemExit(f"cannot export: {e}") from None


def export(args) -> int:
    loaded = load_checkpoint(args.run)
    net, cfg = loaded.model, loaded.config
    info = dataset_info(cfg.dataset)
    T = args.T or cfg.T or info.default_T or getattr(net, "T", None)
    if T is None:
        raise SystemExit("the run names no T; pass --T")
    size = cfg.input_size or info.input_size
    ckpt_dir = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    out = Path(args.out) if args.out else ckpt_dir / f"model{FORMATS[args.format]}"
    torch.manual_seed(0)
    x = (torch.rand(T, args.batch, net.in_channels, size, size) > 0.7).float()  # a spike-like check input
    deployed = inference_model(net)
    ref = deployed(x)
    if args.format == "torchscript":
        export_torchscript(deployed, out, T=T, example_input=x)
        with torch.no_grad():
            diff = (torch.jit.load(str(out))(x) - ref).abs().max().item()
        check = f"max |TorchScript - PyTorch| = {diff:.3g}"
    elif args.format == "onnx":
        export_onnx(deployed, out, T=T, example_input=x)
        try:
            import onnxruntime as ort
        except ImportError:
            check = "not checked (onnxruntime is not installed)"
        else:
            session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(["logits"], {"input": x.numpy()})[0])
            check = f"max |onnxruntime - PyTorch| = {(got - ref).abs().max().item():.3g}"
    else:
        if args.max_pool == "avg":
            from sj_sew.deploy import max_pool_to_avg

            net = max_pool_to_avg(net)
        graph = to_nir(net, (size, size), dt=args.dt, max_pool=args.max_pool, path=out)
        stream = streaming(inference_model(net))
        per_step = torch.stack([stream(frame) for frame in x])
        got = run_nir(from_nir(out, dt=args.dt), x)
        check = (f"{len(graph.nodes)} nodes, {len(graph.edges)} edges; max |NIR (nirtorch) - PyTorch| per step = "
                 f"{(got - per_step).abs().max().item():.3g}")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): {cfg.model or cfg.notation}, epoch {loaded.epoch}, "
          f"input [T={T}, N={args.batch}, C={net.in_channels}, {size}, {size}]; {check}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
