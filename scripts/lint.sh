#!/bin/sh
# Checks the C sources for the layout nginx's own modules keep: lines
# within 80 columns, spaces only, no trailing blanks, no // comments.

set -u
cd "$(dirname "$0")/.." || exit 1

files=$(ls ngx_vetting_module/*.c ngx_vetting_module/*.h \
           t/unit/*.c t/fuzz/*.c 2>/dev/null)
bad=0

check() {
    # $1: what; $2: the offending lines
    if [ -n "$2" ]; then
        echo "lint: $1:"
        echo "$2" | head -20
        bad=1
    fi
}

# shellcheck disable=SC2086
check "lines over 80 columns" "$(grep -nE '^.{81,}' $files)"
# shellcheck disable=SC2086
check "tabs" "$(grep -nP '\t' $files)"
# shellcheck disable=SC2086
check "trailing blanks" "$(grep -nE '[[:space:]]+$' $files)"
# shellcheck disable=SC2086
check "// comments" "$(grep -nE '^[^"]*//' $files \
                        | grep -v 'http://\|https://\|urn:')"

if [ $bad = 0 ]; then
    echo "lint: $(echo "$files" | wc -w) files clean"
fi

exit $bad
