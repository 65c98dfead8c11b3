# Sourced by the other scripts: create or reuse the project's virtual environment in .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARKSERVE_DEV_VENV:-$ROOT/.venv}"
stamp="$VENV/.sparkserve-installed"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  python3 -m venv "$VENV"
fi
# Reinstall only when the project's dependency list changed since the last install.
want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing sparkserve and its test dependencies"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test]" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import sparkserve.cli" 
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
