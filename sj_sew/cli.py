"""The ``sj-sew`` command (also ``python -m sj_sew``): train, evaluate and export runs, list what is registered,
and summarise a model. ``sj-sew train`` takes exactly ``scripts/train.py``'s flags."""
from __future__ import annotations

import argparse
import sys

import torch

from .data import list_datasets
from .models import create_model, list_models
from .neurons import close_matches
from .summary import model_summary
from .training import cli as train_cli


def _summary(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="sj-sew summary", description="Parameters, output shape and the synaptic "
                                "operations per inference of a registered model at a given firing rate.")
    p.add_argument("model", help="a registered model (sj-sew models)")
    p.add_argument("--input-size", type=int, help="side of the square input (default: the model's own, else 224)")
    p.add_argument("--in-channels", type=int, help="input channels (default: the model's)")
    p.add_argument("--T", type=int, help="time steps (default: the model's, else 4)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--connect", help="g of SEW blocks")
    p.add_argument("--neuron")
    p.add_argument("--firing-rate", type=float, default=0.1, help="firing rate of every neuron (default 0.1)")
    args = p.parse_args(argv)
    if args.model not in list_models():
        p.error(f"unknown model {args.model!r}; see sj-sew models{close_matches([args.model], list_models())}")
    try:
        net = create_model(args.model, num_classes=args.num_classes, in_channels=args.in_channels,
                           connect=args.connect, neuron=args.neuron, T=args.T)
        static = getattr(net, "T", None) is not None  # a static image, shown T times; else a sequence of events
        T = net.T if static else (args.T or 4)
        size = args.input_size or getattr(net, "input_size", None) or 224
        x = torch.full((1, net.in_channels, size, size), 0.5) if static else torch.zeros(T, 1, net.in_channels, size, size)
        report = model_summary(net, x, args.firing_rate)
    except (ValueError, TypeError) as e:
        p.error(str(e))
    print(f"{args.model}: parameters: {report['parameters']:,}\n"
          f"input: {'image' if static else 'events'} [{'' if static else f'T={T}, '}N, {net.in_channels}, {size}, {size}]"
          f"{f' shown T={T} times' if static else ''} -> output: [N, {report['output'][-1]}]\n"
          f"at firing rate {args.firing_rate:g}: {report['sops'] / 1e6:,.1f} M SOPs (accumulates) + "
          f"{report['macs'] / 1e6:,.1f} M MACs (analog input) per inference")
    return 0


def _listing(lines) -> int:
    print("\n".join(lines))
    return 0


#: Subcommand -> what it runs on the remaining arguments.
COMMANDS = {
    "train": lambda argv: train_cli.main(argv) and 0,
    "models": lambda argv: _listing(list_models(argv[0] if argv else None)),
    "datasets": lambda argv: _listing(train_cli.describe_datasets()),
    "presets": lambda argv: _listing(train_cli.describe_presets()),
    "summary": _summary,
}


def main(argv: list[str] | None = None) -> int:
    """Run ``sj-sew COMMAND [ARGS]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = "usage: sj-sew {" + ",".join(COMMANDS) + "} [ARGS]  (sj-sew COMMAND --help)"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage + "\n\n" + __doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"{usage}\nsj-sew: unknown command {command!r}{close_matches([command], COMMANDS)}", file=sys.stderr)
        return 2
    return COMMANDS[command](rest)
