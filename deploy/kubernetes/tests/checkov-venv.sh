#!/bin/sh
# Creates (once) the virtualenv that holds checkov, and prints the path of its `checkov`.
# Not the project's .venv: checkov 3.3 pins packaging 23.2 and cachetools 5.5, below the versions
# requirements.txt pins for the rest of the tests (pip's resolver would downgrade them).
# Called by test_k8s_policy.py; by hand: sh deploy/kubernetes/tests/checkov-venv.sh
set -eu
CHECKOV_VERSION=3.3.30
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv-checkov"
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/checkov" ] || ! "$venv/bin/pip" show checkov 2>/dev/null | grep -qx "Version: $CHECKOV_VERSION"; then
    "$python" -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
fi
echo "$venv/bin/checkov"
