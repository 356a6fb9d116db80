#!/usr/bin/env bash
# Runs Vexil standalone. Until the services exist (issue: control plane), there is nothing to run.
set -euo pipefail
cat <<'MSG'
Vexil: the evaluation engine and flag model are built (libs/model, libs/eval).
The standalone server (control API + streaming + evaluation) does not exist yet, so there is
nothing to start. Try `make test` or `make bench` in the meantime.
MSG
