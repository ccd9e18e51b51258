#!/usr/bin/env python3
"""Kept by `expflow update` for jobs submitted before the update: a job that
started under the old scripts records its end with `python3 -I
scripts/jobrecord.py finish CODE SIGNAL` (and start, environment). The machinery
now lives in expflow_runtime/; this passes the call on to it. Delete this file
when none of those jobs is queued or running any more (squeue --me).
"""

import os
import sys


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = os.path.join(root, "expflow_runtime", "run.py")
    os.execv(sys.executable, [sys.executable, "-I", run, "job-record"] + sys.argv[1:])


if __name__ == "__main__":
    main()
