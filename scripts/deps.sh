#!/bin/sh
# Installs the Debian packages that a goal of the Makefile needs.
#
#     scripts/deps.sh build|test|run|bench
#
# Run as root it installs what is missing with apt-get; run as another
# user it lists what is missing and fails.

set -eu

build="gcc make nginx nginx-dev libhiredis-dev libmaxminddb-dev
       libyajl-dev libssl-dev libpcre2-dev zlib1g-dev"
test="redis-server libcmocka-dev clang libclang-rt-14-dev
      libmaxmind-db-writer-perl mmdb-bin libnet-ip-perl nodejs"
run="redis-server nodejs curl ca-certificates"
bench="wrk redis-server libnginx-mod-http-lua lua-nginx-redis"

want=$build
for goal in "$@"; do
    case $goal in
        build) ;;
        test)  want="$want $test" ;;
        run)   want="$want $run" ;;
        bench) want="$want $bench $run" ;;
        *)     echo "$0: unknown goal \"$goal\"" >&2; exit 2 ;;
    esac
done

missing=
for p in $want; do
    case " $missing " in *" $p "*) continue ;; esac
    if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null \
         | grep -q 'install ok installed'
    then
        missing="$missing $p"
    fi
done

# npm comes with nodejs from some repositories and apart in Debian's
if ! command -v npm >/dev/null 2>&1; then
    case " $want " in *" nodejs "*) missing="$missing npm" ;; esac
fi

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "$0: missing Debian packages:$missing" >&2
    echo "$0: run as root, or: apt-get install$missing" >&2
    exit 1
fi

echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null

# a package just installed may have started its system service; ours
# run on ports of their own
for s in nginx redis-server; do
    case " $missing " in
        *" $s "*) service "$s" stop >/dev/null 2>&1 || true ;;
    esac
done
