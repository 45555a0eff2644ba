"""SEW paper, Figs. 6-8: gradient amplitude ||dL/dS^l|| per block at initialisation.

Spiking ResNet and SEW ADD / AND / IAND on the 152-layer structure, with and without zero init, for
(Vth, alpha) = (1, 2), (0.5, 2), (1, 3). No training: one forward and backward of a real batch
(Fashion-MNIST test images, resized and repeated to 3 channels; scikit-learn digits if Fashion-MNIST
is not installed). Writes a JSON of every curve and a PNG in the paper's layout.

Output: runs/gradients (untracked) unless --out says otherwise; the committed results are results/gradients:

    python scripts/repro_gradients.py --out results/gradients   # 152 layers, 64x64, T=4, batch 4
    python scripts/repro_gradients.py --quick    # 18 layers, 32x32, T=2, batch 2 (smoke test)

The logic is sj_sew.experiments.gradients.
"""
from __future__ import annotations

from _sweep import init_probe_parser, output_paths, parse_init_probe_args  # noqa: F401  (output_paths: tests)
from sj_sew.experiments import gradients
from sj_sew.experiments.sweep import write_json


def build_parser():
    return init_probe_parser(__doc__, "gradients")


def main(argv=None):
    args = parse_init_probe_args(build_parser(), argv)
    study = gradients.run_study(args.depth, args.size, args.T, args.batch, args.seed, args.progress)
    write_json(args.out / "gradients.json", study, indent=1)
    gradients.plot(study["curves"], args.out / "gradients.png")
    print(gradients.format_table(study["summary"]))
    print(f"wrote {args.out / 'gradients.json'} and {args.out / 'gradients.png'} ({study['meta']['seconds']} s)")


if __name__ == "__main__":
    main()
