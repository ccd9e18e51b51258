#!/usr/bin/env python3
"""Example training code: replace with your own (see README.md, "The job contract").

It shows the contract: read the config, append per-epoch metrics as JSON lines,
keep a checkpoint to resume from, write final metrics as one JSON object, and
stop cleanly when asked to (SIGUSR1 or EXPFLOW_STOP_FILE, before the time limit:
the job is then requeued and resumes from the checkpoint; SIGTERM, when preempted
or cancelled; docs/long-jobs.md).
Standard library only; runs in a few seconds on a CPU.

To see a failed job or a resume, give it one of two keys that only this example
reads (they are not in configs/default.yaml, so that they do not become columns
of your results once your own code replaces this file):
  make train EXP=bad SET_NEW=1 SET=fail_with_exit_code=3   # exits with 3
  make train EXP=r SET_NEW=1 SET=crash_at_epoch=2          # crashes at epoch 2; make resume EXP=r goes on
"""

import json
import math
import os
import random
import signal
import sys
import time

STOP = []  # SIGUSR1 (time limit near) or SIGTERM (preempted): save and exit; the job resumes


def asked_to_stop():
    stop_file = os.environ.get("EXPFLOW_STOP_FILE")
    return bool(STOP) or bool(stop_file and os.path.exists(stop_file))


def simulated_epoch(config, epoch):
    """A deterministic stand-in for one epoch of training."""
    lr = config["optimizer"]["lr"]
    depth = config["model"]["depth"]
    rng = random.Random(config["training"]["seed"] * 1000 + epoch)
    loss = math.exp(-lr * depth * (epoch + 1)) + 0.01 * rng.random()
    return {"epoch": epoch, "step": (epoch + 1) * 100, "loss": round(loss, 6),
            "val_acc": round(1.0 - loss / 2, 6)}


def load_checkpoint(path):
    try:
        with open(path) as handle:
            return json.load(handle)["epoch"] + 1
    except (OSError, ValueError, KeyError):
        return 0


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def main():
    with open(os.environ["EXPFLOW_CONFIG_JSON"]) as handle:
        config = json.load(handle)
    checkpoint = os.path.join(os.environ["EXPFLOW_CHECKPOINT_DIR"], "last.json")
    first_epoch = load_checkpoint(checkpoint)
    metrics = None
    signal.signal(signal.SIGUSR1, lambda signum, frame: STOP.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: STOP.append(signum))  # preempted, cancelled
    if first_epoch:
        print("resuming at epoch {} (attempt {})".format(first_epoch, os.environ.get("EXPFLOW_ATTEMPT")))
    for epoch in range(first_epoch, config["training"]["epochs"]):
        if epoch == config.get("crash_at_epoch") and os.environ.get("EXPFLOW_RESUME") != "1":
            print("crashing at epoch {} (crash_at_epoch)".format(epoch), file=sys.stderr)
            return 1
        time.sleep(config["training"]["seconds_per_epoch"])
        metrics = simulated_epoch(config, epoch)
        with open(os.environ["EXPFLOW_METRICS"], "a") as handle:
            handle.write(json.dumps(metrics) + "\n")
        write_json(checkpoint, metrics)
        print("epoch {epoch}: loss={loss} val_acc={val_acc}".format(**metrics), flush=True)
        if asked_to_stop() and epoch + 1 < config["training"]["epochs"]:
            print("saved at epoch {}; stopping to be requeued".format(epoch), flush=True)
            return 0
    if config.get("fail_with_exit_code"):
        print("failing on purpose (fail_with_exit_code)", file=sys.stderr)
        return int(config["fail_with_exit_code"])
    if metrics is None:  # resumed after the last epoch: the checkpoint holds it
        with open(checkpoint) as handle:
            metrics = json.load(handle)
    write_json(os.environ["EXPFLOW_RESULTS"], {"loss": metrics["loss"], "val_acc": metrics["val_acc"],
                                               "epochs": config["training"]["epochs"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
