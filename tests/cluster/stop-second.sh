#!/usr/bin/env bash
# stop-second.sh -- stop the second cluster (greene) that start-second.sh
# started, and nothing else: stop.sh run on greene's own pid records.
set -euo pipefail
export SLURMLAB_RUN="${SLURMLAB_SECOND_RUN:-/run/slurmlab-greene}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/stop.sh" "$@"
