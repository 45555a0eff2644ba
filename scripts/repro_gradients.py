"""SEW paper, Figs. 6-8: gradient amplitude ||dL/dS^l|| per block at initialisation.

Spiking ResNet and SEW ADD / AND / IAND on the 152-layer structure, with and without zero init, for
(Vth, alpha) = (1, 2), (0.5, 2), (1, 3), over --seeds initialisations x --batches disjoint real batches
(Fashion-MNIST test images, resized and repeated to 3 channels; scikit-learn digits if Fashion-MNIST
is not installed). No training: one forward and backward per batch. Under zero init every SEW g is the
identity, so only SEW ADD runs there (--all-zero-init-sew runs all three). Writes a JSON of every curve
(median, 5-95% band, every run) and a PNG in the paper's layout.

Output: runs/gradients (untracked) unless --out says otherwise; the committed results are results/gradients:

    python scripts/repro_gradients.py --out results/gradients --name gradients_seeds  # 152 layers, 64x64, T=4,
                                                                   # 5 seeds x 3 batches of 4
    python scripts/repro_gradients.py --out results/gradients --name gradients_seeds --summarise-only  # re-read
    python scripts/repro_gradients.py --out results/gradients --name gradients_batch16 --main-only --batch 16 \
        --batches 2                                              # the main setting with larger BN batches
    python scripts/repro_gradients.py --out results/gradients --variants  # 224x224, batch 16, eval-mode BN
    python scripts/repro_gradients.py --quick    # 18 layers, 32x32, T=2, 2 seeds x 1 batch of 2 (smoke test)

The logic is sj_sew.experiments.gradients.
"""
from __future__ import annotations

import json

from _sweep import init_probe_parser, output_paths, parse_init_probe_args  # noqa: F401  (output_paths: tests)
from sj_sew.experiments import gradients
from sj_sew.experiments.sweep import write_json


def build_parser():
    p = init_probe_parser(__doc__, "gradients")
    p.add_argument("--seeds", type=int, default=5, help="initialisation seeds 0..N-1")
    p.add_argument("--batches", type=int, default=3, help="disjoint real batches per seed")
    p.add_argument("--name", default="gradients", help="file stem of the JSON and PNG")
    p.add_argument("--all-zero-init-sew", action="store_true", help="run SEW AND/IAND under zero init too")
    p.add_argument("--main-only", action="store_true", help="only Spiking ResNet and SEW ADD at Vth 1, alpha 2, "
                   "no zero init (gradients.MAIN)")
    p.add_argument("--summarise-only", action="store_true",
                   help="no probes: recompute the summary and the PNG from the runs stored in the JSON")
    p.add_argument("--variants", action="store_true", help="only the setting variants (gradients.VARIANTS) at "
                   "Vth 1, alpha 2, no zero init: writes variants.json")
    return p


def main(argv=None):
    args = parse_init_probe_args(build_parser(), argv)
    if args.quick:
        args.seeds, args.batches, args.all_zero_init_sew = 2, 1, True
    path = args.out / f"{args.name}.json"
    if args.variants:  # the paper's possible settings, Vth 1, alpha 2, no zero init
        v = gradients.run_variants(args.depth, args.T, progress=args.progress)
        write_json(args.out / "variants.json", v, indent=1)
        for k, r in v["variants"].items():
            print(k, *([round(x, 2) for x in r[m]] for m in ("log10_first_over_last", "log10_identity_areas")))
        return
    if args.summarise_only:
        study = json.loads(path.read_text())
        study["summary"] = gradients.summarise_curves(study["curves"], study["meta"]["batches"])
    else:
        study = gradients.run_study(args.depth, args.size, args.T, args.batch, args.seeds, args.batches, args.progress,
                                    all_zero_init_sew=args.all_zero_init_sew, partial=path,
                                    only=gradients.MAIN if args.main_only else None)
    write_json(path, study, indent=1)
    gradients.plot(study["curves"], args.out / f"{args.name}.png")
    print(gradients.format_table(study["summary"]))
    print(f"wrote {path} and {args.out / f'{args.name}.png'} ({study['meta']['seconds']} s)")


if __name__ == "__main__":
    main()
