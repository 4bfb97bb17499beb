#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (written by
# `tito gradescope build`). It installs Python, the course's dependencies (pinned) and the course
# itself from /autograder/source (this zip, unpacked) into a virtual environment.
# Any of Gradescope's Ubuntu base images (22.04 has the Python below in its own packages).
set -euo pipefail
ROOT="${TINYQ_AUTOGRADER_ROOT:-/autograder}"
export TINYQ_DATA_DIR="$ROOT/data"   # data the tests read (module 22's model), fetched once below

PYTHON=@PYTHON@     # the Python the zip was built and its versions pinned with
TOOLS="@APT@"       # Ubuntu packages of tools the tests require (a C++ compiler for module 20)

if [ -n "$TOOLS" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $TOOLS >/dev/null
fi

if ! command -v "$PYTHON" >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if ! apt-get install -y -qq "$PYTHON" "$PYTHON-venv" >/dev/null; then   # not in this Ubuntu: deadsnakes
    apt-get install -y -qq software-properties-common >/dev/null
    add-apt-repository -y ppa:deadsnakes/ppa && apt-get update -qq
    apt-get install -y -qq "$PYTHON" "$PYTHON-venv" >/dev/null
  fi
fi
"$PYTHON" -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --quiet --upgrade pip
"$ROOT/venv/bin/python" -m pip install --quiet -c "$ROOT/source/constraints.txt" "$ROOT/source[@EXTRAS@]"
"$ROOT/venv/bin/python" -c "import numba, tinyq, tito.grade"   # fail the image build, not a learner's run
# data the tests require, fetched into the image once (a failed download fails the build, not a grade)
@FETCH@
