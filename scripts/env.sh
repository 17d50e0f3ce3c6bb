# Source this to use the Node and pnpm that scripts/setup.sh installed (if it had to).
_pp_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_pp_root/.tools/node/node_modules/.bin:$_pp_root/.tools/pnpm/node_modules/.bin:$PATH"
unset _pp_root
