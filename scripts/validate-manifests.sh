#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests (deploy/kubernetes) and the Argo Workflows plugin
# (deploy/argo): built-in kinds against Kubernetes' OpenAPI schemas (kubernetes-validate, strict),
# crd.yaml as a CustomResourceDefinition, the PercoreApp samples against the CRD's schema
# (jsonschema), and broken copies that must be rejected. scripts/validate_manifests.py says what
# is and is not checked. No API server is needed; nothing is sent anywhere once the tools are
# installed.
#
#   bash scripts/validate-manifests.sh
#
# Environment:
#   KUBE_VERSIONS      Kubernetes versions to check against (default "1.33.0 1.37.0": the
#                      oldest the operator's k8s-openapi targets, and the newest that
#                      kubernetes-validate 1.37 ships)
#   PERCORE_CRD        another CRD file in place of deploy/kubernetes/crd.yaml (for testing)
#   ARGO_WORKFLOW_CRD  Argo's Workflow CRD (manifests/base/crds/full/argoproj.io_workflows.yaml
#                      of the Argo release in use), to check the Workflow sample against it too
#   VALIDATE_VENV      the virtualenv (default target/validate-venv)
#
# Prints one line per file or check and ends with `N passed, M failed`; exits 1 on any failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VALIDATE_VENV:-$root/target/validate-venv}
crd=${PERCORE_CRD:-$root/deploy/kubernetes/crd.yaml}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# Install only what is missing, so that a run with the tools in place needs no network.
missing=()
for pkg in kubernetes-validate jsonschema pyyaml; do
    "$venv/bin/python" -m pip show --quiet "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi

exec "$venv/bin/python" "$root/scripts/validate_manifests.py" --root "$root" --crd "$crd"
