"""A researcher's first week (issue 15): the mistakes a new user makes and what
the project says back, tested without SLURM; the cluster side is in
test_slurm_cluster.py."""

from __future__ import annotations

import pytest

from expflow.runtime import module

state = module("state")


def dependent(state_now, **entry):
    job = {"job_id": "12", "state": state_now, "reason": "Dependency"}
    state.explain_dependency(dict({"job_id": "12"}, **entry), job, {"job_id": "11", "state": "FAILED"})
    return job["reason"]


@pytest.mark.parametrize(("state_now", "entry", "reason"), [
    ("CANCELLED", {"after": "11", "dependency": "afterok:11"},
     "train job 11 ended FAILED: cancelled by SLURM, its dependency can never be met"),
    ("PENDING", {"after": "11", "dependency": "afterok:11"}, "train job 11 ended FAILED: SLURM cancels this job"),
    ("PENDING", {"after": "11"}, "train job 11 ended FAILED: this job never starts; make cancel it"),
    ("PENDING", {"after": "10"}, "Dependency"),  # after an older training: not this one's to judge
    ("PENDING", {}, "Dependency"),  # submitted without a dependency
])
def test_a_job_whose_training_failed_says_why_it_never_starts(state_now, entry, reason):
    assert dependent(state_now, **entry) == reason
