# Sourced by the other scripts: create or reuse the project's virtual environment in .venv, and
# install the Debian packages the tests run for real (Prometheus, Chromium) when they are missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages: prometheus (prometheus, promtool: the monitoring test scrapes for real) and chromium
# (the HTML report test opens the page in headless Chromium). Installed with apt-get when running as
# root (CI on a fresh machine); otherwise the command to run is printed and those tests fail saying so.
# SPARKSERVE_NO_APT=1 skips the install.
missing_debs=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing_debs+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing_debs+=(chromium)
if [ "${#missing_debs[@]}" -gt 0 ] && [ "${SPARKSERVE_NO_APT:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian packages: ${missing_debs[*]}"
    apt_opts=(-o DPkg::Lock::Timeout=600 -qq)
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends \
      "${missing_debs[@]}" >/dev/null
  else
    echo "==> missing Debian packages: ${missing_debs[*]} (the Prometheus and browser tests need them);" \
         "install them with: sudo apt-get install --no-install-recommends ${missing_debs[*]}" >&2
  fi
fi

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
