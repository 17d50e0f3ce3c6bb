#!/usr/bin/env bash
# Installs what peerpull needs to run from this checkout, idempotently:
#   - Node.js >= 22 (Node 24 from the npm registry into .tools/ when the machine's is older),
#   - pnpm (into .tools/ when missing), and the workspace's dependencies;
#   - with --system: the Debian packages the end-to-end tests drive
#     (docker-registry, containerd, skopeo, chromium), when they are missing.
# Prints the PATH to use; `source scripts/env.sh` applies it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/.tools"
want_system=false
for arg in "$@"; do
  case "$arg" in
    --system) want_system=true ;;
    *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

# Each tool in its own prefix: one npm install must not prune the other's packages.
export PATH="$tools/node/node_modules/.bin:$tools/pnpm/node_modules/.bin:$PATH"
npm_into() {
  mkdir -p "$tools/$1"
  [ -f "$tools/$1/package.json" ] || echo '{"private":true}' > "$tools/$1/package.json"
  npm install --prefix "$tools/$1" --no-audit --no-fund --loglevel=error "$2" >&2
}
if [ "$(node_major)" -lt 22 ]; then
  log "Node $(node --version 2>/dev/null || echo none) is too old (need >= 22): installing Node 24 into .tools/node"
  npm_into node node@24
  if [ "$(node_major)" -lt 22 ]; then
    # npm may have skipped the package's install script, which installs the binary package.
    npm rebuild --prefix "$tools/node" --foreground-scripts node >&2 || true
  fi
  [ "$(node_major)" -ge 22 ] || { echo "setup.sh: could not install Node 24" >&2; exit 1; }
fi
log "node $(node --version)"

if ! command -v pnpm >/dev/null 2>&1; then
  log "installing pnpm into .tools/pnpm"
  npm_into pnpm pnpm@10
fi
log "pnpm $(pnpm --version)"

if $want_system; then
  missing=()
  command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
  command -v containerd >/dev/null 2>&1 || missing+=(containerd)
  command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
  [ -x /usr/bin/chromium ] || missing+=(chromium) # the dashboard test drives it headless (playwright-core)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "setup.sh: the tests need ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
    log "installing ${missing[*]} from Debian"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi

log "installing workspace dependencies"
pnpm install --frozen-lockfile >&2
echo "$tools/node/node_modules/.bin:$tools/pnpm/node_modules/.bin"
