# shellcheck shell=bash
# The Python venv for Python-side tests (sourced; needs common.sh).
#
#   venv_ensure DIR REQUIREMENTS   # (re)create DIR only when REQUIREMENTS or the base
#                                  # python changed; sets CYN_VENV_PY

# shellcheck disable=SC2034 # used by the scripts that source this file
CYN_VENV_PY=

venv_ensure() {
  local dir=$1 req=$2 stamp
  stamp="$(sha256sum "$req" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0], sys.prefix)')" || return 1
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.cynode-stamp" 2>/dev/null)" = "$stamp" ] &&
    "$dir/bin/python" -c 'import sys' 2>/dev/null; then
    info "Python venv $dir is up to date ($("$dir/bin/python" --version))"
  else
    say "creating the Python venv $dir from $req"
    rm -rf "$dir"
    if ! python3 -m venv "$dir" >/dev/null 2>&1; then
      rm -rf "$dir"
      # Debian's own python3 keeps venv support in a separate package.
      apt_install python3-venv || return 1
      python3 -m venv "$dir" || return 1
    fi
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$req" </dev/null || return 1
    echo "$stamp" >"$dir/.cynode-stamp"
  fi
  CYN_VENV_PY=$dir/bin/python
}
