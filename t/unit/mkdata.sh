#!/bin/sh
# Builds the MaxMind DB fixtures of the unit tests into t/unit/data/.
#
#     t/unit/mkdata.sh
#
# A database is rebuilt only when it is missing or older than this script
# or scripts/mkmmdb.pl.  The networks are documentation ranges
# (RFC 5737, RFC 3849) plus the probe addresses of vetting_geo_open().

set -eu

here=$(cd "$(dirname "$0")" && pwd)
mk=$here/../../scripts/mkmmdb.pl
data=$here/data

mkdir -p "$data"


db() {
    out=$data/$1
    shift

    if [ -f "$out" ] && [ "$out" -nt "$mk" ] && [ "$out" -nt "$0" ]; then
        return 0
    fi

    "$mk" --out "$out" "$@"
}


v4="203.0.113.0/24=DE 198.51.100.0/24=US"
v6="$v4 2001:db8:1::/48=FR"

# the matrix of lookups: IP version, aliasing, layout, record size
db v4-geoip2.mmdb         --layout geoip2 --ip-version 4 --record-size 24 $v4
db v4-flat.mmdb           --layout flat --ip-version 4 --record-size 28 $v4
db v6-geoip2.mmdb         --layout geoip2 --ip-version 6 --record-size 28 $v6
db v6-flat.mmdb           --layout flat --ip-version 6 --record-size 32 $v6
db v6-geoip2-noalias.mmdb --layout geoip2 --ip-version 6 --no-alias \
                          --record-size 32 $v6
db v6-flat-noalias.mmdb   --layout flat --ip-version 6 --no-alias \
                          --record-size 24 $v6

# IPv4 data kept only under ::ffff:0:0/96, as some other writers do
db v6-mapped-only.mmdb    --layout flat --ip-version 6 --no-alias \
                          ::ffff:203.0.113.0/120=DE ::ffff:198.51.100.0/120=US \
                          2001:db8:1::/48=FR

# the same networks, other countries: replaces a database in place
db v4-geoip2-other.mmdb   --layout geoip2 --ip-version 4 \
                          203.0.113.0/24=FR 198.51.100.0/24=CA

# holds the probe addresses: auto-detection by probe, corruption tests
db probe-v4-flat.mmdb     --layout flat --ip-version 4 \
                          1.1.1.0/24=AU 8.8.8.0/24=US 203.0.113.0/24=DE
db probe-v6-geoip2.mmdb   --layout geoip2 --ip-version 6 \
                          1.1.1.0/24=AU 8.8.8.0/24=US 2001:4860::/32=US \
                          203.0.113.0/24=DE

# malformed country codes, and a record without a country
db odd.mmdb               --layout geoip2 --ip-version 4 \
                          192.0.2.0/26=de 192.0.2.64/26=D1 \
                          192.0.2.128/26=DEU 192.0.2.192/27=- \
                          192.0.2.224/27=é 198.51.100.0/24=US

# no record has a country
db nocountry.mmdb         --layout flat --ip-version 4 203.0.113.0/24=-
