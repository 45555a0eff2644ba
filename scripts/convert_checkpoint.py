"""Convert a published checkpoint (the SEW, MS-ResNet or MLF authors', SpikingJelly's zoo) to sj_sew's names.

    python scripts/convert_checkpoint.py sew18_checkpoint_319.pth --arch sew_resnet18 --out sew18_sj_sew.pth
    python scripts/convert_checkpoint.py dvsgesture.pth --arch net7b --source sew_authors --trusted

The output is a plain state dict for ``sj_sew.create_model(arch, weights=OUT)``. Every key and shape is checked,
and so are the arguments a training checkpoint records (connect, model: pass --connect/--family to match them).
Every error is one line on stderr and exit status 1: a missing file, a file that holds no state dict, a pickle
that needs --trusted, a checkpoint that does not fit (its first problems, and how many more).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sj_sew  # noqa: E402
from sj_sew.pretrained import SOURCES, CheckpointMismatch, convert_checkpoint  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="the file to convert")
    p.add_argument("--arch", required=True, choices=sj_sew.list_models(), metavar="ARCH",
                   help="the sj_sew model it is for (sj_sew.list_models())")
    p.add_argument("--source", default="auto", choices=["auto", *SOURCES], help="who wrote it (default: find out)")
    p.add_argument("--out", help="where to write the converted state dict (default: <checkpoint>.sj_sew.pth)")
    p.add_argument("--num-classes", type=int, help="classes of its classifier, if not the model's default")
    p.add_argument("--connect", help="g of its SEW blocks (ADD, AND, IAND)")
    p.add_argument("--family", help="block family of a notation net (sew, spiking, plain)")
    p.add_argument("--trusted", action="store_true",
                   help="allow a full pickle (old training checkpoints that weights_only=True refuses)")
    return p


SHOWN = 5  # a mismatch's problems printed on its one line


def output_paths(args) -> list[Path]:
    """The converted state dict: --out, else beside the input."""
    return [Path(args.out or f"{args.checkpoint}.sj_sew.pth")]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    kwargs = {k: v for k, v in dict(num_classes=args.num_classes, connect=args.connect, family=args.family).items()
              if v is not None}
    (out,) = output_paths(args)
    try:
        state = convert_checkpoint(args.checkpoint, args.arch, args.source, args.trusted, **kwargs)
        torch.save(state, out)
    except CheckpointMismatch as e:
        shown = "; ".join(e.problems[:SHOWN]) + (f"; and {len(e.problems) - SHOWN} more" if len(e.problems) > SHOWN
                                                  else "")
        print(f"error: {str(e).splitlines()[0]} {shown}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, RuntimeError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    print(f"{out}: {len(state)} tensors for {args.arch}, sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
