#!/usr/bin/env bash
# Print the path of a Python interpreter of the wanted minor version, or explain what to install.
# Usage: scripts/find-python.sh 3.10 RASA_PYTHON   (the variable that may name one explicitly)
set -euo pipefail
want="$1"
var="${2:-}"

is_version() {
  "$1" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" 2>/dev/null
}

if [ -n "$var" ] && [ -n "${!var:-}" ]; then
  if is_version "${!var}"; then echo "${!var}"; exit 0; fi
  echo "error: $var=${!var} is not a working Python $want" >&2
  exit 1
fi
if command -v "python$want" >/dev/null 2>&1 && is_version "python$want"; then
  command -v "python$want"; exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
  root="$(pyenv root)"
  for candidate in $(ls -d "$root"/versions/"$want".* 2>/dev/null | sort -V -r); do
    if is_version "$candidate/bin/python"; then echo "$candidate/bin/python"; exit 0; fi
  done
fi
for candidate in "$HOME"/.pyenv/versions/"$want".*/bin/python /usr/bin/python"$want" /usr/local/bin/python"$want"; do
  if [ -x "$candidate" ] && is_version "$candidate"; then echo "$candidate"; exit 0; fi
done
cat >&2 <<MSG
error: Python $want was not found.
  Belofte needs Python $want${var:+ (or set $var to its path)}. Install it, for example:
    pyenv install $want        (then run make again)
  or your distribution's python$want package.
MSG
exit 1
