#!/usr/bin/env bash
# Build the sandbox control plane from upstream sources through the Go module proxy.
#
# Why a script: there is no container runtime here, so kind and prebuilt release tarballs are out;
# the Go module proxy is what we have. k8s.io/kubernetes is not meant to be used as a dependency:
# its go.mod points every k8s.io/* staging module at ./staging, so a wrapper module requires
# k8s.io/kubernetes vX.Y.Z and replaces each staging module with its published v0.Y.Z release.
# The version ldflags are set so the servers report their real version (helm and kubectl check it).
#
# Output: $MODELDEPLOY_CACHE/bin/k8s-<ver>/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,
# kwok,kwokctl}. A complete folder (marked by .complete) is reused as is.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
CACHE="${MODELDEPLOY_CACHE:-$HOME/.cache/modeldeploy}"
OUT="$CACHE/bin/k8s-${K8S_VERSION}"
WORK="$CACHE/build/k8s-${K8S_VERSION}"

if [ -f "$OUT/.complete" ]; then
  echo "control plane binaries: $OUT (cached)"
  exit 0
fi
command -v go >/dev/null || { echo "error: go is not installed (needed to build the control plane)" >&2; exit 1; }
mkdir -p "$OUT" "$WORK/k8s" "$WORK/etcd"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

step() { echo "[build $(date +%H:%M:%S)] $*"; }

# --- kube-apiserver, kube-controller-manager, kube-scheduler ---------------------------------
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
staging_version="v0.${K8S_VERSION#v1.}"
step "resolving k8s.io/kubernetes ${K8S_VERSION} (staging modules at ${staging_version})"
gomod_file=$(cd "$WORK/k8s" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" \
  | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  echo "module modeldeploy.local/k8sbuild"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes ${K8S_VERSION}"
  echo
  echo "replace ("
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod_file" \
    | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > "$WORK/k8s/go.mod"
cat > "$WORK/k8s/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
EOF
(cd "$WORK/k8s" && go mod tidy -e >/dev/null 2>&1 || true)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done
step "building kube-apiserver, kube-controller-manager, kube-scheduler (slow the first time)"
(cd "$WORK/k8s" && go build -tags tools -ldflags "$ldflags" -o "$OUT/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler)

# --- etcd: its main is one call to etcdmain.Main ----------------------------------------------
step "building etcd ${ETCD_VERSION}"
cat > "$WORK/etcd/go.mod" <<EOF
module modeldeploy.local/etcdbuild

go 1.24

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
EOF
cat > "$WORK/etcd/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
(cd "$WORK/etcd" && go mod tidy >/dev/null && go build -ldflags "-s -w" -o "$OUT/etcd" .)

# --- kwok and kwokctl: plain go install --------------------------------------------------------
step "building kwok ${KWOK_VERSION}"
GOBIN="$OUT" go install -ldflags "-s -w" \
  "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}"

"$OUT/kube-apiserver" --version
"$OUT/etcd" --version | sed -n 1p  # sed reads to the end: `head` can SIGPIPE etcd (exit 141 under pipefail)
touch "$OUT/.complete"
step "done: $OUT"
