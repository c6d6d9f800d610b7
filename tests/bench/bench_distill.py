"""Benchmark: a distilled MLP student vs the same student trained alone, when only 10% of labels are known.

The teacher is the digits CNN (``digits.build``, trained on all 1,437 training labels, 98.33 % held out).
For each seed, a stratified 10% of the training labels (144 images) is kept; the rest are hidden. Rows:

- ``alone``: the student trained with cross-entropy on the 144 labelled images only;
- ``distilled``: Hinton's loss — the teacher's soft targets (temperature T) on all 1,437 training images,
  plus cross-entropy on the 144 labels, weighted α : 1−α;
- two controls that say where the gain comes from: ``distilled, labelled images only`` (soft targets on the
  144 labelled images, nothing else) and ``teacher hard labels`` (cross-entropy on the teacher's argmax for
  all 1,437 images, no soft targets, i.e. pseudo-labelling).

Every row uses the same student, optimizer (Adam, cosine decay, weight decay 1e-4), batch size and the same
number of optimizer steps (``--epochs`` over 1,437 images; runs on 144 images get proportionally more
epochs), so the baseline is trained to convergence too. Accuracy is on the 360 held-out images; the
table shows mean ± std (population std) over the seeds.

Usage: python tests/bench/bench_distill.py [--student mlp-32] [--seeds 5] [--epochs 60] [--T 4] [--alpha 0.9]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

import numpy as np  # noqa: E402

from modeldeploy.compress import distill, students  # noqa: E402
from modeldeploy.models import digits  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", default="mlp-32", choices=list(students.CATALOGUE))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60, help="epochs over the full training set")
    parser.add_argument("--T", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--labels", type=float, default=0.1, help="fraction of training labels kept")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = parser.parse_args(argv)

    build = digits.build(log=None)
    teacher = digits.load_params(build["model_path"])
    x_train, y_train, x_test, y_test = split = digits.load_split(0)
    spec = students.get(args.student)
    teacher_logits = digits.forward(teacher, x_train)
    steps = args.epochs * -(-len(x_train) // 32)

    def accuracy(params):
        return float((spec.forward(params, x_test).argmax(axis=1) == y_test).mean())

    def epochs_for(n):  # the same number of optimizer steps for every row
        return max(1, round(steps / -(-n // 32)))

    rows = {"alone": [], "distilled": [], "distilled, labelled images only": [], "teacher hard labels": []}
    start = time.perf_counter()
    for seed in range(args.seeds):
        y = distill.hide_labels(y_train, args.labels, seed)
        lab = np.flatnonzero(y != distill.UNLABELLED)
        rows["alone"].append(accuracy(distill.train_alone(
            args.student, split, epochs_for(len(lab)), seed, label_fraction=args.labels)))
        rows["distilled"].append(accuracy(distill.distill(
            teacher, args.student, (x_train, y, x_test, y_test), args.T, args.alpha, args.epochs, seed)))
        rows["distilled, labelled images only"].append(accuracy(distill.distill(
            teacher, args.student, (x_train[lab], y[lab], x_test, y_test), args.T, args.alpha,
            epochs_for(len(lab)), seed)))
        rows["teacher hard labels"].append(accuracy(distill.train_alone(
            args.student, (x_train, teacher_logits.argmax(axis=1), x_test, y_test), args.epochs, seed)))
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.2%}" for k, v in rows.items()), file=sys.stderr, flush=True)

    base = np.array(rows["alone"])
    print(f"digits teacher: CNN {build['params']} params, held-out {build['accuracy']:.2%}; student {args.student} "
          f"({spec.params_count()} params); {args.labels:.0%} of labels, T {args.T}, alpha {args.alpha}, "
          f"{args.epochs} epochs ({steps} steps), {args.seeds} seeds, {time.perf_counter() - start:.0f} s")
    print(f"| {'variant':<34}| held-out accuracy | vs alone (pt) |")
    print(f"|{'-' * 35}|-------------------|---------------|")
    for name, accs in rows.items():
        a = np.array(accs)
        gain = 100 * (a - base)
        print(f"| {name:<34}| {100 * a.mean():6.2f} ± {100 * a.std():.2f} %  | "
              f"{gain.mean():+5.2f} ± {gain.std():.2f}  |")
    if args.json:
        print(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
