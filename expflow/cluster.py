"""What expflow knows about the machine and its SLURM cluster, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PartitionFacts:
    """One partition as sinfo describes it."""

    name: str
    default: bool
    available: str
    max_time: str
    nodes: int
    cpus_per_node: int
    memory_mb: int
    gpu_types: tuple[str, ...]
    gpus_per_node: int


@dataclass(frozen=True)
class ClusterFacts:
    """Everything detect() found. sources maps each field name to where its value
    came from ("password database", "$SCRATCH", "sacctmgr", "default", ...)."""

    user: str
    home: str
    scratch: str
    cluster: str
    slurm: bool
    accounting: bool
    accounts: tuple[str, ...] = ()
    default_account: str = ""
    partitions: tuple[PartitionFacts, ...] = ()
    max_array_size: int | None = None
    conda_base: str = ""
    mail_domain: str = ""  # SLURM's MailDomain: where a user's address is user@mail_domain
    sources: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def default_partition(self) -> str:
        for partition in self.partitions:
            if partition.default:
                return partition.name
        return self.partitions[0].name if self.partitions else ""

    def partition(self, name: str) -> PartitionFacts | None:
        return next((p for p in self.partitions if p.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the documented shape of `expflow info --json`."""
        return {
            "user": self.user,
            "home": self.home,
            "scratch": self.scratch,
            "cluster": self.cluster,
            "slurm": self.slurm,
            "accounting": self.accounting,
            "accounts": list(self.accounts),
            "default_account": self.default_account,
            "default_partition": self.default_partition,
            "partitions": [
                {
                    "name": p.name,
                    "default": p.default,
                    "available": p.available,
                    "max_time": p.max_time,
                    "nodes": p.nodes,
                    "cpus_per_node": p.cpus_per_node,
                    "memory_mb": p.memory_mb,
                    "gpu_types": list(p.gpu_types),
                    "gpus_per_node": p.gpus_per_node,
                }
                for p in self.partitions
            ],
            "max_array_size": self.max_array_size,
            "conda_base": self.conda_base,
            "mail_domain": self.mail_domain,
            "sources": dict(self.sources),
            "warnings": list(self.warnings),
        }
