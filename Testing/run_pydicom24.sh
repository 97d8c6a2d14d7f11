#!/usr/bin/env bash
# Runs the pydicom-dependent tests again under pydicom 2.4.4 (the version Slicer 5.10 bundles),
# in a separate virtual environment beside the main one.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-pydicom24
.venv-pydicom24/bin/pip install -q --upgrade pip
.venv-pydicom24/bin/pip install -q -e ".[codecs,qc]" "pydicom==2.4.4" pytest nibabel
.venv-pydicom24/bin/python -c "import pydicom; assert pydicom.__version__ == '2.4.4', pydicom.__version__"
.venv-pydicom24/bin/python -m pytest -m pydicom_dependent -p no:cacheprovider "$@"
