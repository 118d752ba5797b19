#!/usr/bin/env bash
# One entry point that sets up everything edgekit needs on a fresh Debian machine, then runs:
#
#   ./run.sh demo        the main job in small: a short architecture search for the default
#                        emulated board, then build the chosen model and measure it on QEMU and
#                        Unicorn, printing a readable summary
#   ./run.sh test [ARGS] the whole test suite (unit, hardware-in-the-loop on emulated boards,
#                        notebooks); ARGS go to pytest
#   ./run.sh setup       only the set-up
#
# Set-up is idempotent and quick when nothing is missing:
#   - Debian packages (cross compiler, newlib, QEMU, host gcc, the Fashion-MNIST and fortunes
#     datasets, PostgreSQL for the search tests) with --no-install-recommends, via apt-get
#     (as root, or through sudo);
#   - a virtual environment in .venv with the exact pins of requirements.lock (re-installed when
#     the lock file changes) and edgekit itself, editable;
#   - Renode, where the CI machines' kit sits beside the clone (../shared/tools/renode): its
#     setup.sh (mono), and its bin/ on PATH so the Renode and Robot tests run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
# gcc + libc6-dev: the tests compile the C kernels and generated models for the host too;
# postgresql: the search tests start a server of their own (several workers on one study)
APT_PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm make gcc libc6-dev dataset-fashion-mnist fortunes postgresql)

log() { printf '[edgekit setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else log "need root (or sudo) to run: $*"; exit 1
  fi
}

ensure_apt_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  # A Python that cannot make virtual environments (Debian's python3 without python3-venv).
  if ! command -v python3 >/dev/null 2>&1; then
    missing+=(python3 python3-venv)
  elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

ensure_venv() {
  local stamp="$VENV/.edgekit-lock.sha256" want
  want="$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing pinned Python dependencies (requirements.lock)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.lock"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT"
    echo "$want" > "$stamp"
  fi
}

# Renode: the kit of this project's CI machines, beside the clone (../shared/tools/renode, a
# Renode 1.15.3 build; its setup.sh installs Debian's mono runtime). Elsewhere Renode is found
# on PATH or as $RENODE, and its tests skip without it.
RENODE_KIT="$ROOT/../shared/tools/renode"

ensure_renode() {
  [ -x "$RENODE_KIT/bin/renode" ] || return 0
  sh "$RENODE_KIT/setup.sh" >/dev/null || { log "Renode kit set-up failed ($RENODE_KIT/setup.sh)"; exit 1; }
  # renode-test runs the first python3 on PATH: the venv's, which has robotframework
  PATH="$(cd "$RENODE_KIT/bin" && pwd):$VENV/bin:$PATH"
  export PATH
  log "Renode: $(command -v renode)"
}

setup() {
  ensure_apt_packages
  ensure_venv
  ensure_renode
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  demo)
    setup
    exec "$VENV/bin/edgekit" demo "$@"
    ;;
  test)
    setup
    cd "$ROOT"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh demo|test|setup [ARGS...]" >&2
    exit 2
    ;;
esac
