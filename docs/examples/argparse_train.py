#!/usr/bin/env python3
"""An ordinary training script that takes argparse flags and prints its metrics,
as many researchers already have one. It knows nothing of expflow: the stage
script passes the experiment's config as flags (job-lib.sh's config_flags), and
METRIC_PATTERN_1 in settings.env reads the metrics from the job's log
(docs/getting-started.md, "Plug in your code"). It runs in a second on a CPU.
"""

import argparse
import math
import time


def parse_args():
    parser = argparse.ArgumentParser(description="Train a (simulated) model.")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--depth", type=int, default=2, help="number of layers")
    parser.add_argument("--layers", type=int, nargs="+", default=[64], help="width of each layer")
    parser.add_argument("--nesterov", action="store_true")
    return parser.parse_args()


def main():
    args = parse_args()
    print(f"training with lr={args.lr} epochs={args.epochs} depth={args.depth} layers={args.layers} "
          f"nesterov={args.nesterov}", flush=True)
    for epoch in range(args.epochs):
        time.sleep(0.05)
        loss = math.exp(-args.lr * args.depth * (epoch + 1))
        print(f"epoch {epoch}: loss={loss:.6f} val_acc={1 - loss / 2:.6f}", flush=True)


if __name__ == "__main__":
    main()
