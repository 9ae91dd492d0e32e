#!/usr/bin/env bash
# The side-by-side benchmark (make bench).
#
# wrk sends FHIR reads, spread over many apps' Bearer tokens, through one
# gateway variant at a time; every variant proxies to the same upstream:
#
#   direct         no gateway: wrk against the upstream itself (shows
#                  what the load generator can do)
#   bare           nginx proxy
#   limit_req      nginx limit_req keyed on the Authorization header
#   lua            Lua + Redis peer: a per-app counter in Redis per request
#   module-local   ngx_vetting_module, state in its zone only
#   module-redis   ngx_vetting_module, state shared through Redis
#   module-redis-100  the same with a rate of 100r/s burst=200 per app
#                  instead of a huge one: smaller leases from Redis
#   module-geo     module-redis plus country checks (vetting_geoip)
#   module-exact   module-redis with an exact rate (Redis asked per request)
#
# The variants run in turn, each in a fresh nginx with one worker (the
# other core runs wrk), and the round is repeated; the order rotates from
# round to round.  Before timing, each variant is checked: the module
# variants learn every app's token through their token endpoint (a fake
# authorization server answers), then one request per app must come back
# 200 and, with the module, be logged as the right proven app (from the
# US, with geo).  Timed runs have no access log; a run counts only if every
# response was a 200 and the module refused nothing.
#
# Prints a table and writes $BENCH_DIR/results-<date>.{md,tsv,json}, with
# the raw wrk output in results-<date>.log.
#
# Environment:
#   BENCH_SECONDS=10      length of each timed run
#   BENCH_RUNS=3          rounds
#   BENCH_WARMUP=2        seconds of untimed load before each timed run
#   BENCH_CONNECTIONS=50  wrk connections (one wrk thread)
#   BENCH_APPS=1000       apps, one token each
#   BENCH_GEOIP_DB=build/demo-country.mmdb  the country database of
#                         module-geo (make country-db fetches it); when the
#                         file is missing, a test database is made
#   BENCH_GEO_NETWORKS=50000  networks in that test database
#   BENCH_VARIANTS="..."  the variants to run, in this order (default all)
#   BENCH_CALLGRIND=1     then run each gateway variant once under
#                         valgrind's callgrind and report the instructions
#                         per request, and where they go (~1.5 min)
#   BENCH_RETRIES=2       times a noisy run is run again
#   BENCH_PIN=1           pin the gateway worker to the first CPU and wrk
#                         to the last (upstream and Redis stay free)
#   BENCH_DIR=build/bench where the results go
#   BENCH_KEEP=1          keep the temporary directory
#   VETTING_MODULE=       the module (default build/ngx_http_vetting_module.so)
#   NGINX=/usr/sbin/nginx

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

NGINX=${NGINX:-/usr/sbin/nginx}
MODULE=${VETTING_MODULE:-$ROOT/build/ngx_http_vetting_module.so}
DURATION=${BENCH_SECONDS:-10}
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-50}
APPS=${BENCH_APPS:-1000}
GEOIP_DB=${BENCH_GEOIP_DB:-$ROOT/build/demo-country.mmdb}
GEO_NETWORKS=${BENCH_GEO_NETWORKS:-50000}
CALLGRIND=${BENCH_CALLGRIND:-0}
OUT_DIR=${BENCH_DIR:-$ROOT/build/bench}
KEEP=${BENCH_KEEP:-0}
PIN=${BENCH_PIN:-0}

# a run during which something else used more than this share of a core
# (other programs, kernel threads) is noisy: it is run again, up to
# RETRIES times, and ratios leave it out when they can
NOISE_LIMIT=50
RETRIES=${BENCH_RETRIES:-2}

LUA_MODULES=/usr/lib/nginx/modules
FHIR_PATH=/fhir/r4/Patient/bench-1
NCPU=$(nproc)
HZ=$(getconf CLK_TCK)

ALL_VARIANTS=(direct bare limit_req lua module-local module-redis
              module-redis-100 module-geo module-exact)

# the features of each variant, as the #if lines of the templates name them
declare -A FEATURES=(
    [direct]=""
    [bare]=""
    [limit_req]="limit_req"
    [lua]="lua"
    [module-local]="module"
    [module-redis]="module redis"
    [module-redis-100]="module redis rate100"
    [module-geo]="module redis geo"
    [module-exact]="module redis exact"
)

declare -A LABEL=(
    [direct]="upstream direct (no gateway)"
    [bare]="nginx proxy (bare)"
    [limit_req]="nginx limit_req + proxy"
    [lua]="Lua + Redis peer + proxy"
    [module-local]="module, local + proxy"
    [module-redis]="module, Redis + proxy"
    [module-redis-100]="module, Redis, 100r/s + proxy"
    [module-geo]="module, Redis + geo + proxy"
    [module-exact]="module, Redis exact + proxy"
)

read -r -a VARIANTS <<<"${BENCH_VARIANTS:-${ALL_VARIANTS[*]}}"

TMP=
GW_PID=
GW_WORKER=
SUBST=()
declare -A PIDS=()
declare -A R=()           # results: R[variant,round,metric], round "med"
declare -A CG=()          # callgrind: CG[variant,metric]


say() { printf '[bench] %s\n' "$*"; }
warn() { printf '[bench] %s\n' "$*" >&2; }
die() { warn "$@"; exit 1; }


# --- stopping ---------------------------------------------------------------

# TERM, wait up to 5 s, then KILL; only the given pids (our children)
stop_pids() {
    local pid alive i
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 50; i++)); do
        alive=0
        for pid in "$@"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "$@"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$? pids=()
    trap - INT TERM EXIT
    [ -n "$GW_PID" ] && pids+=("$GW_PID")
    [ -n "${PIDS[upstream]:-}" ] && pids+=("${PIDS[upstream]}")
    [ -n "${PIDS[redis]:-}" ] && pids+=("${PIDS[redis]}")
    if [ ${#pids[@]} -gt 0 ]; then
        stop_pids "${pids[@]}"
    fi
    if [ -n "$TMP" ]; then
        if [ "$KEEP" = 1 ]; then
            say "kept $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}


# --- helpers ----------------------------------------------------------------

need() {
    [ -e "$1" ] || command -v "$1" >/dev/null 2>&1 \
        || die "$1 not found ($2)"
}

in_run() {
    local v
    for v in "${VARIANTS[@]}"; do
        [ "$v" = "$1" ] && return 0
    done
    return 1
}

has_feature() {
    case " ${FEATURES[$1]} " in *" $2 "*) return 0 ;; esac
    return 1
}

# free loopback ports: listen on port 0, note the port, close
free_ports() {
    perl -MIO::Socket::INET -e '
        my @s = map {
            IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
                                  LocalPort => 0, ReuseAddr => 1)
                or die "cannot listen: $!\n"
        } 1 .. $ARGV[0];
        print join(" ", map { $_->sockport } @s), "\n";
    ' "$1"
}

# render TEMPLATE OUT FEATURE...: keeps the lines of the "#if" sections of
# the features, then fills in the placeholders with the SUBST sed script
render() {
    local template=$1 out=$2
    shift 2
    awk -v features="$*" '
        BEGIN {
            n = split(features, f, " ")
            for (i = 1; i <= n; i++) on[f[i]] = 1
        }
        /^[ \t]*#if / {
            name = $2
            neg = sub(/^!/, "", name)
            keep[++depth] = neg ? !(name in on) : (name in on)
            next
        }
        /^[ \t]*#endif/ { depth--; next }
        {
            for (i = 1; i <= depth; i++) if (!keep[i]) next
            print
        }
    ' "$template" | sed "${SUBST[@]}" >"$out"
}

# wait_ready PID LOG CHECK...: polls CHECK for up to 30 s
wait_ready() {
    local pid=$1 log=$2 i
    shift 2
    for ((i = 0; i < 300; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            warn "the server died: $*"
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    warn "not ready in 30 s: $*"
    tail -n 20 "$log" >&2 || true
    exit 1
}

# CPU time (clock ticks, user + system) of a process and its threads
cpu_ticks() {
    local line rest
    # gone: stopped by Ctrl-C (wrk takes it as "stop", and returns 0)
    read -r line 2>/dev/null <"/proc/$1/stat" \
        || die "process $1 is gone: interrupted, or it crashed"
    rest=${line##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $(( ${12} + ${13} ))
}

# the CPU seconds of the children this shell has waited for, from the
# output of the builtin "times" (which must run in this shell: a subshell
# or a pipeline has children of its own)
children_cpu() {
    awk 'NR == 2 {
        split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%.3f\n", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$1"
}

# Redis's count of calls per command, "name calls" lines
redis_calls() {
    redis-cli -p "$REDIS_PORT" info commandstats \
        | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1 \2/p'
}

# redis_per_request BEFORE AFTER REQUESTS: the commands Redis ran per
# request (those run inside functions and scripts included) on the first
# line, then "fcall=0.031 hmget=0.031 ...", the busiest first
redis_per_request() {
    awk -v n="$3" '
        FNR == NR { before[$1] = $2; next }
        $1 != "info" {
            d = $2 - before[$1]
            if (d > 0) { total += d; per[$1] = d }
        }
        END {
            printf "%.3f\n", total / n
            for (c in per) printf "%s=%.3f\n", c, per[c] / n
        }' "$1" "$2" | {
        read -r total
        echo "$total"
        sort -t= -k2 -gr | head -n 6 | paste -sd' ' -
    }
}

# a number from the module's status JSON
status_field() {
    curl -fsS "http://127.0.0.1:$GW_CHECK_PORT/vetting/status" \
        | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

# jiffies of all CPUs: in tasks, in tasks and interrupts, in all (from
# /proc/stat: cpu user nice system idle iowait irq softirq steal; the
# kernel counts softirq time, much of loopback networking, apart from the
# tasks it interrupts)
cpu_all() {
    awk '/^cpu / { print $2 + $3 + $4, $2 + $3 + $4 + $7 + $8,
                         $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# share JIFFIES TOTAL: percent of one core, from jiffies of all CPUs
share() {
    awk -v j="$1" -v t="$2" -v n="$NCPU" \
        'BEGIN { printf "%.0f\n", t ? j * 100 * n / t : 0 }'
}

median() {
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "nan"; exit }
            if (NR % 2) print v[(NR + 1) / 2]
            else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

# a / b with 3 decimals, or "nan"
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "nan" || b == "nan" || b + 0 == 0) print "nan"
        else printf "%.3f\n", a / b }'
}

# x / d with the given decimals
div() {
    awk -v x="$1" -v d="$2" -v p="$3" 'BEGIN { printf "%.*f\n", p, x / d }'
}


# --- a gateway --------------------------------------------------------------

# start_gateway VARIANT [LAUNCHER...]: a fresh nginx for the variant in
# $TMP/gw; with a launcher (valgrind) it runs as one process
start_gateway() {
    local variant=$1 dir=$TMP/gw master=on
    shift
    [ $# -gt 0 ] && master=off

    rm -rf "$dir"
    mkdir -p "$dir/temp"

    SUBST=(-e "s|@DIR@|$dir|g" -e "s|@MODULE@|$MODULE|g"
           -e "s|@VARIANT@|$variant|g"
           -e "s|@PORT@|$GW_PORT|g" -e "s|@CHECK_PORT@|$GW_CHECK_PORT|g"
           -e "s|@UP_PORT@|$UP_PORT|g" -e "s|@AS_PORT@|$AS_PORT|g"
           -e "s|@REDIS_PORT@|$REDIS_PORT|g" -e "s|@GEOIP_DB@|$GEOIP_DB|g")

    # shellcheck disable=SC2086
    render "$HERE/gateway.conf.in" "$dir/nginx.conf" ${FEATURES[$variant]}
    # shellcheck disable=SC2086
    render "$HERE/gateway-locations.conf.in" "$dir/locations.conf" \
        ${FEATURES[$variant]}
    render "$HERE/lua-peer.lua.in" "$dir/lua-peer.lua"

    if ! "$NGINX" -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$dir/nginx-t.log" 2>&1
    then
        cat "$dir/nginx-t.log" >&2
        die "$variant: nginx rejects its configuration ($dir/nginx.conf)"
    fi

    "$@" "$NGINX" -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" \
        -g "daemon off; master_process $master;" >"$dir/stdout.log" 2>&1 &
    GW_PID=$!

    wait_ready "$GW_PID" "$dir/error.log" \
        curl -fsS -o /dev/null "http://127.0.0.1:$GW_CHECK_PORT/bench-ready"

    if [ "$master" = on ]; then
        GW_WORKER=$(pgrep -P "$GW_PID" | head -n 1)
        [ -n "$GW_WORKER" ] || die "$variant: no nginx worker"
    else
        GW_WORKER=$GW_PID
    fi
    if [ "$PIN" = 1 ]; then
        taskset -pc 0 "$GW_WORKER" >/dev/null
    fi
}

stop_gateway() {
    stop_pids "$GW_PID"
    GW_PID=
    GW_WORKER=
}

# The module variants learn every app's token through the token endpoint;
# then one request per app must pass, as that app.
check_gateway() {
    local variant=$1 log=$TMP/gw/check.log codes bad want i
    if has_feature "$variant" module; then
        codes=$(curl -sS -K "$TMP/learn.curl" | sort | uniq -c | tr -s ' ' \
                || true)
        [ "$codes" = " $APPS 200" ] \
            || die "$variant: the token endpoint answered: $codes"
    fi

    : >"$log"
    codes=$(curl -sS -K "$TMP/check.curl" | sort | uniq -c | tr -s ' ' \
            || true)
    [ "$codes" = " $APPS 200" ] \
        || die "$variant: the FHIR check requests got: $codes"

    # a log line is written after its response: wait for the last ones
    for ((i = 0; i < 100; i++)); do
        [ "$(grep -c ' want=app-' "$log")" -ge "$APPS" ] && break
        sleep 0.1
    done

    if has_feature "$variant" geo; then
        want='^200 app=\(app-[0-9]*\) identity=proven decision=pass country=US want=\1$'
    elif has_feature "$variant" module; then
        want='^200 app=\(app-[0-9]*\) identity=proven decision=pass country=[A-Z-]* want=\1$'
    else
        want='^200 upstream=200 want=app-[0-9]*$'
    fi

    bad=$(grep ' want=app-' "$log" | grep -vc "$want" || true)
    if [ "$bad" != 0 ] || [ "$(grep -c ' want=app-' "$log")" != "$APPS" ]
    then
        grep ' want=app-' "$log" | grep -v "$want" | head -n 5 >&2 || true
        die "$variant: $bad of $APPS check requests were not decided as" \
            "expected (see $log)"
    fi
}

# what the gateway complained about, into the raw log; prints the count
gateway_log_errors() {
    local variant=$1 round=$2 log=$TMP/gw/error.log n
    n=$(grep -c '\[\(error\|crit\|alert\|emerg\)\]' "$log" || true)
    if [ "$n" != 0 ]; then
        {
            printf -- '--- %s, round %s: error.log ---\n' "$variant" "$round"
            grep '\[\(error\|crit\|alert\|emerg\)\]' "$log" \
                | sed 's/^[0-9\/]* [0-9:]* [^ ]* [^ ]* //' \
                | sort | uniq -c | sort -rn | head -n 10
        } >>"$RAW_LOG"
    fi
    echo "$n"
}

# wrk_run PORT SECONDS OUT [CONNECTIONS]
wrk_run() {
    local pin=()
    [ "$PIN" = 1 ] && pin=(taskset -c $((NCPU - 1)))
    "${pin[@]}" wrk -t1 -c"${4:-$CONNECTIONS}" -d"$2s" --latency \
        -s "$HERE/bench.lua" "http://127.0.0.1:$1$FHIR_PATH" \
        -- "$TMP/tokens.txt" "$TMP/addresses.txt" "$FHIR_PATH" 1 >"$3" 2>&1
}


# --- one timed run ----------------------------------------------------------

# run_variant VARIANT ROUND: check, warm up, time; results into R
run_variant() {
    local v=$1 round=$2 port out line kv key n us
    local gw0=0 gw1=0 up0 up1 rd0 rd1 ref0=0 ref1=0 errors=0
    local tasks0 busy0 total0 tasks1 busy1 total1 wrk0 wrk1

    out=$TMP/wrk-$v-$round.txt

    if [ "$v" = direct ]; then
        port=$UP_PORT
        curl -fsS -o /dev/null "http://127.0.0.1:$UP_PORT$FHIR_PATH" \
            || die "the upstream does not answer"
    else
        start_gateway "$v"
        check_gateway "$v"
        port=$GW_PORT
    fi

    wrk_run "$port" "$WARMUP" "$out.warmup" || die "$v: wrk failed"

    # counters before and after; between the two "times", only wrk runs
    if [ "$v" != direct ]; then
        gw0=$(cpu_ticks "$GW_WORKER")
    fi
    if has_feature "$v" module; then
        ref0=$(status_field refused)
    fi
    up0=$(cpu_ticks "$UP_WORKER")
    rd0=$(cpu_ticks "${PIDS[redis]}")
    redis_calls >"$TMP/redis.0"
    read -r tasks0 busy0 total0 < <(cpu_all)
    times >"$TMP/times.0"

    wrk_run "$port" "$DURATION" "$out" || die "$v: wrk failed"

    times >"$TMP/times.1"
    read -r tasks1 busy1 total1 < <(cpu_all)
    up1=$(cpu_ticks "$UP_WORKER")
    rd1=$(cpu_ticks "${PIDS[redis]}")
    redis_calls >"$TMP/redis.1"
    if [ "$v" != direct ]; then
        gw1=$(cpu_ticks "$GW_WORKER")
    fi
    if has_feature "$v" module; then
        ref1=$(status_field refused)
    fi
    wrk0=$(children_cpu "$TMP/times.0")
    wrk1=$(children_cpu "$TMP/times.1")

    line=$(grep '^BENCH ' "$out") || { cat "$out" >&2; die "$v: no result"; }
    for kv in ${line#BENCH }; do
        R[$v,$round,${kv%%=*}]=${kv#*=}
    done
    n=${R[$v,$round,requests]}
    us=${R[$v,$round,duration_us]}

    R[$v,$round,rps]=$(awk -v n="$n" -v us="$us" \
        'BEGIN { printf "%.0f\n", n * 1e6 / us }')
    R[$v,$round,p50]=$(div "${R[$v,$round,p50_us]}" 1000 2)
    R[$v,$round,p90]=$(div "${R[$v,$round,p90_us]}" 1000 2)
    R[$v,$round,p99]=$(div "${R[$v,$round,p99_us]}" 1000 2)

    # CPU time per request of the gateway worker, the upstream and Redis
    R[$v,$round,gw_us]=$(div "$(( (gw1 - gw0) * 1000000 / HZ ))" "$n" 1)
    R[$v,$round,up_us]=$(div "$(( (up1 - up0) * 1000000 / HZ ))" "$n" 1)
    R[$v,$round,redis_us]=$(div "$(( (rd1 - rd0) * 1000000 / HZ ))" "$n" 1)
    {
        read -r "R[$v,$round,redis_cmds]"
        read -r "R[$v,$round,redis_mix]" || R[$v,$round,redis_mix]=
    } < <(redis_per_request "$TMP/redis.0" "$TMP/redis.1" "$n")

    # shares of one core: wrk; the whole machine; interrupts (mostly
    # loopback networking); tasks that are none of ours (other programs,
    # kernel threads: noise)
    R[$v,$round,wrk_cpu]=$(awk -v a="$wrk0" -v b="$wrk1" -v us="$us" \
        'BEGIN { printf "%.0f\n", (b - a) * 1e8 / us }')
    R[$v,$round,busy]=$(share $((busy1 - busy0)) $((total1 - total0)))
    R[$v,$round,irq]=$(share $((busy1 - busy0 - tasks1 + tasks0)) \
        $((total1 - total0)))
    R[$v,$round,other]=$(awk -v tasks="$(share $((tasks1 - tasks0)) \
                                                $((total1 - total0)))" \
        -v wrk="${R[$v,$round,wrk_cpu]}" \
        -v ours=$(( (gw1 - gw0) + (up1 - up0) + (rd1 - rd0) )) \
        -v hz="$HZ" -v us="$us" \
        'BEGIN { o = tasks - wrk - ours / hz * 1e8 / us
                 printf "%.0f\n", o < 0 ? 0 : o }')

    R[$v,$round,noisy]=$(awk -v o="${R[$v,$round,other]}" -v l="$NOISE_LIMIT" \
        'BEGIN { print (o > l) ? 1 : 0 }')

    R[$v,$round,refused]=$((ref1 - ref0))
    for key in connect read write status timeout; do
        errors=$((errors + ${R[$v,$round,$key]}))
    done
    R[$v,$round,errors]=$errors
    R[$v,$round,valid]=yes
    if [ "$errors" != 0 ] || [ "${R[$v,$round,refused]}" != 0 ]; then
        R[$v,$round,valid]=no
        warn "$v, round $round: $errors socket errors or non-200 answers," \
            "${R[$v,$round,refused]} refused by the module"
    fi

    {
        printf '\n=== round %s: %s (%s) ===\n' "$round" "$v" "${LABEL[$v]}"
        cat "$out"
        printf 'Redis commands per request: %s\n' \
            "${R[$v,$round,redis_mix]:-none}"
    } >>"$RAW_LOG"

    if [ "$v" != direct ]; then
        R[$v,$round,log_errors]=$(gateway_log_errors "$v" "$round")
        stop_gateway
    else
        R[$v,$round,log_errors]=0
    fi

    say "$(printf 'round %s  %-13s %7s req/s  p50 %5s  p99 %6s ms  gateway %5s us/req  wrk %3s%%  other %3s%%' \
        "$round" "$v" "${R[$v,$round,rps]}" "${R[$v,$round,p50]}" \
        "${R[$v,$round,p99]}" "${R[$v,$round,gw_us]}" \
        "${R[$v,$round,wrk_cpu]}" "${R[$v,$round,other]}")"
}


# --- callgrind --------------------------------------------------------------

# callgrind_variant VARIANT: the gateway as one process under callgrind;
# instructions (Ir) counted over a few seconds of load after the warm-up
callgrind_variant() {
    local v=$1 dir=$TMP/gw out n ir dump i
    out=$TMP/cg-$v.txt

    start_gateway "$v" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$TMP/gw/callgrind.out"
    check_gateway "$v"
    wrk_run "$GW_PORT" 2 "$out.warmup" 10 || die "$v: wrk failed"

    redis_calls >"$TMP/redis.0"
    callgrind_control -i on "$GW_PID" >/dev/null 2>&1
    wrk_run "$GW_PORT" "$CG_SECONDS" "$out" 10 || die "$v: wrk failed"
    callgrind_control -i off "$GW_PID" >/dev/null 2>&1
    redis_calls >"$TMP/redis.1"
    callgrind_control -d "$GW_PID" >/dev/null 2>&1

    dump=$dir/callgrind.out.1
    for ((i = 0; i < 100; i++)); do
        grep -q '^totals:' "$dump" 2>/dev/null && break
        sleep 0.1
    done
    stop_gateway

    n=$(sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p' "$out")
    ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$dump")
    if [ -z "$n" ] || [ -z "$ir" ]; then
        die "$v: no callgrind result"
    fi

    CG[$v,requests]=$n
    CG[$v,ir]=$(( ir / n ))
    {
        read -r "CG[$v,redis_cmds]"
        read -r "CG[$v,redis_mix]" || CG[$v,redis_mix]=
    } < <(redis_per_request "$TMP/redis.0" "$TMP/redis.1" "$n")

    # the limiter's functions, inclusive, per request
    # ("  123,456 (12.3%)  file.c:function [object]" lines)
    CG[$v,top]=$(callgrind_annotate --inclusive=yes --auto=no \
            --threshold=100 "$dump" 2>/dev/null \
        | awk -v n="$n" '
            match($0, /^ *[0-9,]+ +\( *[0-9.]+%\) +/) {
                fn = substr($0, RLENGTH + 1)
                sub(/ \[.*/, "", fn)
                sub(/.*:/, "", fn)
                # (a filter counts the filters after it too: left out)
                if (fn !~ /vetting|lua_access|limit_req|^EVP_Digest$|^MMDB_|^redis/ \
                    || fn ~ /filter/)
                    next
                ir = $1
                gsub(",", "", ir)
                if (!seen[fn]++) printf "%s %d\n", fn, ir / n
            }' \
        | head -n 14 | paste -sd';' -)

    say "callgrind: $v: ${CG[$v,ir]} instructions per request" \
        "(user space, $n requests)"
}


# --- setup ------------------------------------------------------------------

need "$NGINX" "Debian package nginx"
need wrk "Debian package wrk"
need redis-server "Debian package redis-server"
need redis-cli "Debian package redis-tools"
need curl "Debian package curl"
need perl "Debian package perl"
need pgrep "Debian package procps"
if [ "$CALLGRIND" = 1 ]; then
    need valgrind "Debian package valgrind"
    need callgrind_control "Debian package valgrind"
fi

for v in "${VARIANTS[@]}"; do
    [ -n "${LABEL[$v]:-}" ] \
        || die "unknown variant \"$v\" (known: ${ALL_VARIANTS[*]})"
    if has_feature "$v" module && [ ! -f "$MODULE" ]; then
        die "the module is not built: $MODULE (make module)"
    fi
    if has_feature "$v" lua; then
        need "$LUA_MODULES/ndk_http_module.so" \
            "Debian package libnginx-mod-http-ndk"
        need "$LUA_MODULES/ngx_http_lua_module.so" \
            "Debian package libnginx-mod-http-lua"
        need /usr/share/lua/5.1/nginx/redis.lua \
            "Debian package lua-nginx-redis"
    fi
done

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vetting-bench.XXXXXX")
# nginx workers run as nobody when started by root: they need to get in
chmod 755 "$TMP"
mkdir -p "$OUT_DIR" "$TMP/upstream/temp" "$TMP/upstream/html${FHIR_PATH%/*}" \
    "$TMP/redis"

STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$OUT_DIR/results-$STAMP
RAW_LOG=$RESULTS.log
: >"$RAW_LOG"

read -r UP_PORT AS_PORT REDIS_PORT GW_PORT GW_CHECK_PORT < <(free_ports 5)

say "temporary directory $TMP"
say "variants: ${VARIANTS[*]}"
say "$RUNS rounds of ${DURATION}s each (+${WARMUP}s warm-up);" \
    "wrk -t1 -c$CONNECTIONS over $APPS apps"

# is anything else using the machine?
read -r _ busy0 total0 < <(cpu_all)
sleep 1
read -r _ busy1 total1 < <(cpu_all)
IDLE_BUSY=$(share $((busy1 - busy0)) $((total1 - total0)))
if [ "$IDLE_BUSY" -gt 10 ]; then
    warn "before the start, other programs used ${IDLE_BUSY}% of a core:" \
        "the numbers will be noisy (see the \"other\" column)"
fi

# apps and their tokens, as the fake authorization server makes them:
# "<client_id>.<secret of this run>"; curl command files that make the
# gateway learn them, and that check one request per app
SECRET=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')

# the country database, and client addresses for wrk that it places in
# the US
if [ -f "$GEOIP_DB" ]; then
    GEO_SOURCE="$GEOIP_DB ($(du -h "$GEOIP_DB" | cut -f1))"
    "$HERE/geodata.pl" --db "$GEOIP_DB" --addresses "$APPS" --seed 1 \
        --addrs-out "$TMP/addresses.txt"
else
    GEO_SOURCE="a test database of $GEO_NETWORKS networks (scripts/mkmmdb.pl)"
    "$HERE/geodata.pl" --networks "$GEO_NETWORKS" \
        --nets-out "$TMP/networks.txt" --addresses "$APPS" --seed 1 \
        --addrs-out "$TMP/addresses.txt"
    GEOIP_DB=$TMP/country.mmdb
    mapfile -t networks <"$TMP/networks.txt"
    perl "$ROOT/scripts/mkmmdb.pl" --layout geoip2 --ip-version 6 \
        --out "$GEOIP_DB" "${networks[@]}"
    unset networks
fi
say "country database: $GEO_SOURCE"
mapfile -t addresses <"$TMP/addresses.txt"

for ((i = 1; i <= APPS; i++)); do
    app=$(printf 'app-%04d' "$i")
    token=$app.$SECRET
    echo "$token"
    if [ "$i" -gt 1 ]; then
        echo next >&3
        echo next >&4
    fi
    printf '%s\n' \
        "url = \"http://127.0.0.1:$GW_CHECK_PORT/oauth2/token?client_id=$app\"" \
        "data = \"grant_type=client_credentials&client_id=$app\"" \
        'output = "/dev/null"' 'write-out = "%{http_code}\n"' >&3
    printf '%s\n' \
        "url = \"http://127.0.0.1:$GW_CHECK_PORT$FHIR_PATH\"" \
        "header = \"Authorization: Bearer $token\"" \
        "header = \"X-Forwarded-For: ${addresses[i - 1]}\"" \
        "header = \"X-Bench-App: $app\"" \
        'output = "/dev/null"' 'write-out = "%{http_code}\n"' >&4
done >"$TMP/tokens.txt" 3>"$TMP/learn.curl" 4>"$TMP/check.curl"

# the upstream: a Patient resource, and the fake authorization server
cat >"$TMP/upstream/html$FHIR_PATH" <<'EOF'
{"resourceType":"Patient","id":"bench-1","meta":{"versionId":"1","lastUpdated":"2024-01-01T00:00:00Z"},"identifier":[{"system":"urn:oid:2.16.840.1.113883.4.1","value":"000-00-0000"}],"active":true,"name":[{"use":"official","family":"Bench","given":["Pat"]}],"gender":"unknown","birthDate":"1970-01-01","address":[{"city":"Springfield","state":"IL","postalCode":"62701","country":"US"}]}
EOF
SUBST=(-e "s|@DIR@|$TMP/upstream|g" -e "s|@UP_PORT@|$UP_PORT|g"
       -e "s|@AS_PORT@|$AS_PORT|g" -e "s|@SECRET@|$SECRET|g")
render "$HERE/upstream.conf.in" "$TMP/upstream/nginx.conf"

"$NGINX" -p "$TMP/upstream/" -e "$TMP/upstream/error.log" \
    -c "$TMP/upstream/nginx.conf" -g 'daemon off; master_process on;' \
    >"$TMP/upstream/stdout.log" 2>&1 &
PIDS[upstream]=$!
wait_ready "${PIDS[upstream]}" "$TMP/upstream/error.log" \
    curl -fsS -o /dev/null "http://127.0.0.1:$UP_PORT$FHIR_PATH"
UP_WORKER=$(pgrep -P "${PIDS[upstream]}" | head -n 1)

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
    --appendonly no --dir "$TMP/redis" --daemonize no --logfile '' \
    >"$TMP/redis/redis.log" 2>&1 &
PIDS[redis]=$!
wait_ready "${PIDS[redis]}" "$TMP/redis/redis.log" \
    redis-cli -p "$REDIS_PORT" ping

say "upstream 127.0.0.1:$UP_PORT, authorization server :$AS_PORT," \
    "redis :$REDIS_PORT, gateway :$GW_PORT (checks :$GW_CHECK_PORT)"


# --- the rounds -------------------------------------------------------------

START_TIME=$(date +%s)

for ((round = 1; round <= RUNS; round++)); do
    n=${#VARIANTS[@]}
    for ((k = 0; k < n; k++)); do
        v=${VARIANTS[(k + round - 1) % n]}
        run_variant "$v" "$round"
        # something else took the CPU meanwhile: measure again
        for ((again = 1; again <= RETRIES; again++)); do
            [ "${R[$v,$round,noisy]}" = 1 ] || break
            say "round $round, $v was noisy: again ($again of $RETRIES)"
            run_variant "$v" "$round"
        done
    done
done

say "timed in $(( $(date +%s) - START_TIME )) s"

if [ "$CALLGRIND" = 1 ]; then
    CG_SECONDS=${BENCH_CALLGRIND_SECONDS:-5}
    for v in "${VARIANTS[@]}"; do
        [ "$v" = direct ] || callgrind_variant "$v"
    done
fi


# --- report -----------------------------------------------------------------

metrics=(rps p50 p90 p99 gw_us up_us redis_us redis_cmds wrk_cpu busy irq
         other)

for v in "${VARIANTS[@]}"; do
    for m in "${metrics[@]}"; do
        vals=()
        for ((round = 1; round <= RUNS; round++)); do
            vals+=("${R[$v,$round,$m]}")
        done
        R[$v,med,$m]=$(median "${vals[@]}")
    done
done

# ratio_of A B: throughput of A over B within each round, and the median
# of those; in R[A,round,vs_B]
ratio_of() {
    local a=$1 b=$2 all=() clean=() round
    for ((round = 1; round <= RUNS; round++)); do
        R[$a,$round,vs_$b]=$(ratio "${R[$a,$round,rps]}" "${R[$b,$round,rps]}")
        all+=("${R[$a,$round,vs_$b]}")
        if [ "${R[$a,$round,noisy]}${R[$b,$round,noisy]}" = 00 ]; then
            clean+=("${R[$a,$round,vs_$b]}")
        fi
    done
    if [ ${#clean[@]} -gt 0 ]; then
        R[$a,med,vs_$b]=$(median "${clean[@]}")
    else
        R[$a,med,vs_$b]=$(median "${all[@]}")
    fi
}

if in_run bare; then
    for v in "${VARIANTS[@]}"; do
        ratio_of "$v" bare
    done
fi
if in_run module-redis && in_run lua; then
    ratio_of module-redis lua
fi
if in_run module-geo && in_run module-redis; then
    ratio_of module-geo module-redis
fi

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM=$(awk '/^MemTotal/ { printf "%.1f GiB\n", $2 / 1048576 }' /proc/meminfo)
pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
GIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "?")
MODULE_SUM=$(sha256sum "$MODULE" 2>/dev/null | cut -c1-12 || true)

VERSIONS=(
    "nginx=$(pkgver nginx)"
    "redis-server=$(pkgver redis-server)"
    "wrk=$(pkgver wrk)"
    "libnginx-mod-http-lua=$(pkgver libnginx-mod-http-lua)"
    "lua-nginx-redis=$(pkgver lua-nginx-redis)"
    "libhiredis0.14=$(pkgver libhiredis0.14)"
    "libmaxminddb0=$(pkgver libmaxminddb0)"
    "module=$GIT_REV (so sha256 ${MODULE_SUM:-?})"
)

dash() { if [ -z "$1" ] || [ "$1" = nan ]; then echo "-"; else echo "$1"; fi; }

COLUMNS_TEXT='%-29s %4s %7s %6s %6s %6s %6s %7s %6s %6s %6s %5s %5s %5s %3s\n'

# the table: TEXT (stdout) or markdown
table() {
    local md=$1 v r name bold ok
    if [ "$md" = 1 ]; then
        echo "| variant | run | req/s | p50 ms | p90 ms | p99 ms | vs bare | gateway µs/req | Redis cmds/req | Redis µs/req | upstream µs/req | wrk % | busy % | irq % | other % | ok |"
        echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    else
        # shellcheck disable=SC2059
        printf "$COLUMNS_TEXT" variant run req/s p50 p90 p99 vsbare \
            gw_us rd_cmd rd_us up_us wrk% busy% othr% ok
        printf '%s\n' "$(printf '%.0s-' {1..124})"
    fi
    for v in "${VARIANTS[@]}"; do
        for r in $(seq 1 "$RUNS") med; do
            ok=${R[$v,$r,valid]:-}
            [ "${R[$v,$r,noisy]:-0}" = 1 ] && ok="$ok*"
            if [ "$md" = 1 ]; then
                bold=""
                [ "$r" = med ] && bold="**"
                echo "| $bold${LABEL[$v]}$bold | $bold$r$bold | $bold${R[$v,$r,rps]}$bold | ${R[$v,$r,p50]} | ${R[$v,$r,p90]} | ${R[$v,$r,p99]} | $bold$(dash "${R[$v,$r,vs_bare]:-}")$bold | ${R[$v,$r,gw_us]} | ${R[$v,$r,redis_cmds]} | ${R[$v,$r,redis_us]} | ${R[$v,$r,up_us]} | ${R[$v,$r,wrk_cpu]} | ${R[$v,$r,busy]} | ${R[$v,$r,irq]} | ${R[$v,$r,other]} | $ok |"
            else
                name=""
                [ "$r" = 1 ] && name=${LABEL[$v]}
                # shellcheck disable=SC2059
                printf "$COLUMNS_TEXT" "$name" "$r" "${R[$v,$r,rps]}" \
                    "${R[$v,$r,p50]}" "${R[$v,$r,p90]}" "${R[$v,$r,p99]}" \
                    "$(dash "${R[$v,$r,vs_bare]:-}")" "${R[$v,$r,gw_us]}" \
                    "${R[$v,$r,redis_cmds]}" "${R[$v,$r,redis_us]}" \
                    "${R[$v,$r,up_us]}" "${R[$v,$r,wrk_cpu]}" \
                    "${R[$v,$r,busy]}" "${R[$v,$r,other]}" "$ok"
            fi
        done
    done
}

# round_ratios A B: the per-round ratios, "*" after a noisy one
round_ratios() {
    local r out=()
    for ((r = 1; r <= RUNS; r++)); do
        if [ "${R[$1,$r,noisy]}${R[$2,$r,noisy]}" = 00 ]; then
            out+=("${R[$1,$r,vs_$2]}")
        else
            out+=("${R[$1,$r,vs_$2]}*")
        fi
    done
    echo "${out[*]}"
}

# at_least A LIMIT: "met" or "missed"
at_least() {
    awk -v a="$1" -v l="$2" \
        'BEGIN { print (a != "nan" && a >= l) ? "met" : "missed" }'
}

# the aims of issue 3 and the geo cost of issue 4, as sentences
verdicts() {
    local a
    if in_run module-redis && in_run bare; then
        a=${R[module-redis,med,vs_bare]}
        echo "Redis-shared module / bare proxy: $(dash "$a") (per round:" \
             "$(round_ratios module-redis bare); aim >= 0.90:" \
             "$(at_least "$a" 0.9))"
    fi
    if in_run module-redis && in_run lua; then
        a=${R[module-redis,med,vs_lua]}
        echo "Redis-shared module / Lua + Redis peer: $(dash "$a") (per round:" \
             "$(round_ratios module-redis lua); aim > 1:" \
             "$(awk -v a="$a" 'BEGIN { print (a != "nan" && a > 1) ? "met" : "missed" }'))"
    fi
    if in_run module-geo && in_run module-redis; then
        echo "country checks: module-geo / module-redis =" \
             "$(dash "${R[module-geo,med,vs_module-redis]}") (per round:" \
             "$(round_ratios module-geo module-redis)); gateway CPU" \
             "${R[module-redis,med,gw_us]} -> ${R[module-geo,med,gw_us]} us/request"
    fi
    if in_run direct && in_run bare; then
        echo "load generator: ${R[direct,med,rps]} req/s against the upstream alone" \
             "at ${R[direct,med,wrk_cpu]}% of a core; ${R[bare,med,wrk_cpu]}% of a core" \
             "against the bare proxy (wrk is not the limit while well under 100%)"
    fi
}

callgrind_table() {
    local v
    echo "| variant | Ir/request | Redis cmds/request | of which (inclusive Ir/request) |"
    echo "|---|--:|--:|---|"
    for v in "${VARIANTS[@]}"; do
        [ -n "${CG[$v,ir]:-}" ] || continue
        echo "| ${LABEL[$v]} | ${CG[$v,ir]} | ${CG[$v,redis_cmds]} | ${CG[$v,top]//;/, } |"
    done
}

invalid=0
noisy=0
for v in "${VARIANTS[@]}"; do
    for ((round = 1; round <= RUNS; round++)); do
        [ "${R[$v,$round,valid]}" = yes ] || invalid=$((invalid + 1))
        noisy=$((noisy + R[$v,$round,noisy]))
    done
done

echo
table 0
echo
verdicts
if [ "$CALLGRIND" = 1 ]; then
    echo
    for v in "${VARIANTS[@]}"; do
        [ -n "${CG[$v,ir]:-}" ] || continue
        top=$(cut -d';' -f1-4 <<<"${CG[$v,top]}")
        printf 'callgrind %-16s %6s Ir/req  %s\n' "$v" "${CG[$v,ir]}" \
            "${top//;/, }"
    done
fi
if [ "$invalid" != 0 ]; then
    warn "$invalid run(s) had errors, non-200 answers or refusals: see $RAW_LOG"
fi
if [ "$noisy" != 0 ]; then
    warn "$noisy run(s) marked * were noisy: something else used more than" \
        "${NOISE_LIMIT}% of a core meanwhile; rerun on a quiet machine"
fi
echo

{
    echo "# ngx_vetting_module benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo "Machine: $NCPU CPUs, $CPU_MODEL, $MEM, Linux $(uname -r)."
    echo "Before the start, other programs used ${IDLE_BUSY}% of a core."
    echo
    echo "Versions: $(printf '%s, ' "${VERSIONS[@]}" | sed 's/, $//')."
    echo
    echo "## Method"
    echo
    echo "\`make bench\` (scripts/bench/run.sh). Each variant runs in a fresh nginx"
    echo "with one worker, proxying to the same upstream nginx (one worker, a"
    echo "static Patient JSON, upstream keepalive). wrk \`-t1 -c$CONNECTIONS"
    echo "-d${DURATION}s --latency\` spreads requests over $APPS apps' Bearer tokens"
    echo "(and $APPS US client addresses in X-Forwarded-For, which every variant"
    echo "trusts through realip). $RUNS rounds; the variants take turns within a"
    echo "round and the order rotates; ${WARMUP}s of load before each timed run."
    echo "Before timing, the module variants learned every token through their"
    echo "token endpoint, and one request per app was checked (200; with the"
    echo "module, logged as that proven app). Timed runs have no access log;"
    echo "rates are far above the load, so nothing is refused."
    echo
    echo "Ratios are taken within a round, then the median of the rounds (of"
    echo "the rounds where neither run was noisy, when there are such)."
    echo "CPU columns: CPU time per request of the gateway worker, Redis and the"
    echo "upstream worker (/proc, ${HZ} Hz ticks); Redis cmds/req counts the"
    echo "commands Redis ran, those inside functions included. wrk, busy, irq"
    echo "and other are shares of one core: wrk itself; the whole machine;"
    echo "interrupts (softirq: most of loopback networking, counted apart from"
    echo "the processes); processes that are not the benchmark's (noise)."
    echo "All of it shares $NCPU cores, so absolute numbers are low: compare"
    echo "ratios. Latencies come from closed-loop wrk (coordinated omission)."
    echo "ok: every answer a 200 and nothing refused; * marks a noisy run, during"
    echo "which something else used more than ${NOISE_LIMIT}% of a core ($noisy of"
    echo "$(( RUNS * ${#VARIANTS[@]} )) runs here)."
    echo
    echo "## Results"
    echo
    table 1
    echo
    verdicts | sed 's/^/- /'
    echo
    echo "Redis commands per request (the run nearest the median):"
    echo
    for v in "${VARIANTS[@]}"; do
        best=1
        for ((round = 2; round <= RUNS; round++)); do
            if awk -v a="${R[$v,$round,rps]}" -v b="${R[$v,$best,rps]}" \
                   -v m="${R[$v,med,rps]}" \
                   'BEGIN { exit !((a - m) ^ 2 < (b - m) ^ 2) }'
            then
                best=$round
            fi
        done
        echo "- $v: $(dash "${R[$v,$best,redis_mix]}")"
    done
    if [ "$CALLGRIND" = 1 ]; then
        echo
        echo "## Instructions per request (callgrind)"
        echo
        echo "Each gateway variant once more, as one nginx process under"
        echo "callgrind, ${CG_SECONDS}s of wrk -c10 after the warm-up; user-space"
        echo "instructions only (no kernel), so no noise from other programs. Under"
        echo "valgrind the request rate is ~50x lower, so work that is per second"
        echo "(Redis leases) weighs more per request than at full speed."
        echo
        callgrind_table
    fi
    echo
    echo "## Variants"
    echo
    for v in "${VARIANTS[@]}"; do
        echo "- $v: ${LABEL[$v]}"
    done
    echo
    echo "lua: access_by_lua_file, resty.redis (Debian's nginx.redis): INCR, and"
    echo "EXPIRE on the first hit, per token and second, keepalive pool of 64."
    echo "module-local: vetting_endpoint fhir, vetting_rate 1000000r/s"
    echo "burst=1000000 per=app. module-redis: the same with vetting_redis"
    echo "(leases of up to 256 requests from Redis). module-redis-100: with"
    echo "vetting_rate 100r/s burst=200 per=app instead (leases of ~12)."
    echo "module-geo: module-redis with vetting_geoip (on $GEO_SOURCE),"
    echo "vetting_countries US, vetting_country_unknown allow; the client"
    echo "addresses are ones it places in the US. module-exact: module-redis"
    echo "with \`exact\`. Raw wrk output: $(basename "$RAW_LOG")."
} >"$RESULTS.md"

{
    printf 'variant\trun\trequests_per_s\tp50_ms\tp90_ms\tp99_ms\tvs_bare'
    printf '\tgateway_cpu_us_per_req\tredis_cmds_per_req\tredis_cpu_us_per_req'
    printf '\tupstream_cpu_us_per_req\twrk_cpu_pct\tbusy_pct\tirq_pct\tother_pct'
    printf '\terrors\trefused\tvalid\tnoisy\n'
    for v in "${VARIANTS[@]}"; do
        for r in $(seq 1 "$RUNS") med; do
            printf '%s\t' "$v" "$r" "${R[$v,$r,rps]}" "${R[$v,$r,p50]}" \
                "${R[$v,$r,p90]}" "${R[$v,$r,p99]}" "${R[$v,$r,vs_bare]:-nan}" \
                "${R[$v,$r,gw_us]}" "${R[$v,$r,redis_cmds]}" \
                "${R[$v,$r,redis_us]}" "${R[$v,$r,up_us]}" \
                "${R[$v,$r,wrk_cpu]}" "${R[$v,$r,busy]}" "${R[$v,$r,irq]}" \
                "${R[$v,$r,other]}" "${R[$v,$r,errors]:-}" \
                "${R[$v,$r,refused]:-}"
            printf '%s\t%s\n' "${R[$v,$r,valid]:-}" "${R[$v,$r,noisy]:-}"
        done
    done
} >"$RESULTS.tsv"

json_num() { if [ -z "$1" ] || [ "$1" = nan ]; then echo null; else echo "$1"; fi; }
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
{
    printf '{\n  "date": %s,\n' "$(json_str "$(date -Iseconds)")"
    printf '  "machine": {"nproc": %s, "cpu": %s, "memory": %s, "kernel": %s, "busy_before_pct": %s},\n' \
        "$NCPU" "$(json_str "$CPU_MODEL")" "$(json_str "$MEM")" \
        "$(json_str "$(uname -r)")" "$IDLE_BUSY"
    printf '  "versions": {'
    sep=""
    for kv in "${VERSIONS[@]}"; do
        printf '%s%s: %s' "$sep" "$(json_str "${kv%%=*}")" "$(json_str "${kv#*=}")"
        sep=", "
    done
    printf '},\n'
    printf '  "settings": {"seconds": %s, "runs": %s, "warmup": %s, "connections": %s, "apps": %s, "country_database": %s},\n' \
        "$DURATION" "$RUNS" "$WARMUP" "$CONNECTIONS" "$APPS" \
        "$(json_str "$GEO_SOURCE")"
    printf '  "results": [\n'
    sep=""
    for v in "${VARIANTS[@]}"; do
        for r in $(seq 1 "$RUNS") med; do
            valid=null
            if [ "$r" != med ]; then
                valid=false
                [ "${R[$v,$r,valid]}" = yes ] && valid=true
            fi
            printf '%s    {"variant": %s, "label": %s, "run": %s, ' "$sep" \
                "$(json_str "$v")" "$(json_str "${LABEL[$v]}")" "$(json_str "$r")"
            printf '"requests_per_s": %s, "p50_ms": %s, "p90_ms": %s, "p99_ms": %s, "vs_bare": %s, ' \
                "$(json_num "${R[$v,$r,rps]}")" "$(json_num "${R[$v,$r,p50]}")" \
                "$(json_num "${R[$v,$r,p90]}")" "$(json_num "${R[$v,$r,p99]}")" \
                "$(json_num "${R[$v,$r,vs_bare]:-}")"
            printf '"gateway_cpu_us_per_req": %s, "redis_cmds_per_req": %s, "redis_cpu_us_per_req": %s, "upstream_cpu_us_per_req": %s, ' \
                "$(json_num "${R[$v,$r,gw_us]}")" "$(json_num "${R[$v,$r,redis_cmds]}")" \
                "$(json_num "${R[$v,$r,redis_us]}")" "$(json_num "${R[$v,$r,up_us]}")"
            printf '"wrk_cpu_pct": %s, "busy_pct": %s, "irq_pct": %s, "other_pct": %s, "valid": %s, "noisy": %s}' \
                "$(json_num "${R[$v,$r,wrk_cpu]}")" "$(json_num "${R[$v,$r,busy]}")" \
                "$(json_num "${R[$v,$r,irq]}")" "$(json_num "${R[$v,$r,other]}")" "$valid" \
                "$( [ "${R[$v,$r,noisy]:-}" = 1 ] && echo true || echo false)"
            sep=$',\n'
        done
    done
    printf '\n  ],\n'
    printf '  "callgrind": ['
    sep=""
    if [ "$CALLGRIND" = 1 ]; then
        for v in "${VARIANTS[@]}"; do
            [ -n "${CG[$v,ir]:-}" ] || continue
            printf '%s\n    {"variant": %s, "ir_per_req": %s, "redis_cmds_per_req": %s, "functions": %s}' \
                "$sep" "$(json_str "$v")" "${CG[$v,ir]}" \
                "$(json_num "${CG[$v,redis_cmds]}")" "$(json_str "${CG[$v,top]}")"
            sep=","
        done
    fi
    printf '\n  ],\n  "verdicts": ['
    sep=""
    while IFS= read -r line; do
        printf '%s\n    %s' "$sep" "$(json_str "$line")"
        sep=","
    done < <(verdicts)
    printf '\n  ]\n}\n'
} >"$RESULTS.json"

say "results: $RESULTS.md, .tsv, .json; raw wrk output: .log"
[ "$invalid" = 0 ]
