#!/usr/bin/env bash
# Writes fondo/README.md, the README packaged with the `fondo` crate (its `readme`), from
# the repository's README.md. crates.io resolves a README's relative links against the
# crate's `repository`, and fondo has no public repository, so the packaged copy keeps no
# relative link: a link to a repository file becomes its text (the file's name) and a
# picture from the repository is left out. Absolute links and `#anchors` stay.
#
#   scripts/crate-readme.sh          rewrite fondo/README.md
#   scripts/crate-readme.sh --check  fail if fondo/README.md is not what it would write
#                                    or still has a relative link (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

render() {
    printf '%s\n' \
        '<!-- Generated from the repository'"'"'s README.md by scripts/crate-readme.sh: edit that' \
        '     file, then run the script. This copy drops relative links, which crates.io cannot' \
        '     resolve without a repository address. -->' \
        ''
    # 1. A line that is only a relative picture goes, with the blank line after it.
    # 2. [text](relative target) becomes text.
    sed -E \
        -e '/^!\[[^]]*\]\([^):]*\)$/{N;s/.*\n$//;/^$/d;}' \
        -e 's/\[([^]]+)\]\(([^):#][^):]*)\)/\1/g' \
        README.md
}

# Markdown links or pictures whose target is neither absolute (scheme:) nor an anchor.
relative_links() {
    grep -nE '\]\(([^):#][^):]*)\)' "$1" || true
}

if [ "${1:-}" = --check ]; then
    if ! render | cmp -s - fondo/README.md; then
        echo "crate-readme: fondo/README.md is stale: run scripts/crate-readme.sh" >&2
        render | diff -u fondo/README.md - >&2 || true
        exit 1
    fi
    left=$(relative_links fondo/README.md)
    if [ -n "$left" ]; then
        echo "crate-readme: relative links left in fondo/README.md:" >&2
        echo "$left" >&2
        exit 1
    fi
    echo "crate-readme: fondo/README.md is up to date, with no relative link"
else
    render >fondo/README.md
    echo "crate-readme: wrote fondo/README.md"
fi
