#!/usr/bin/env bash
# Starts the vetting demo stack in the foreground (make run):
#
#   redis-server       shared gateway state            127.0.0.1:<free port>
#   authserver.js      SMART / OAuth 2.0 server        127.0.0.1:<free port>
#   fhirserver.js      FHIR R4 Patient Access API      127.0.0.1:<free port>
#   nginx + module     the gateway                     127.0.0.1:${PORT:-8080}
#
# then replays the demo traffic once, prints the gateway's decisions per app,
# a curl walkthrough and the review command for its Redis, and serves until
# Ctrl-C (or SIGTERM), which stops every process it started and exits 0.
# Everything runs from a temporary directory that is removed on exit; the
# state file $TMPDIR/vetting-demo-$PORT.state names it (dir=), the run's pid
# (pid=) and its Redis port (redis_port=) while the demo runs.
#
# Environment:
#   PORT=8080        the gateway's port
#   VETTING=off      run plain nginx, without the module (it is stripped
#                    from the configuration)
#   GEOIP_DB=path    country database for vetting_geoip (default
#                    build/demo-country.mmdb, fetched by
#                    scripts/fetch-country-db.sh when missing; the directive
#                    is dropped when the file does not exist)
#   ONCE=1           stop after the replay; exit with the replay's status
#   VETTING_MODULE=  the module (default build/ngx_http_vetting_module.so)
#   NGINX=/usr/sbin/nginx

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

PORT=${PORT:-8080}
VETTING=${VETTING:-on}
ONCE=${ONCE:-0}
NGINX=${NGINX:-/usr/sbin/nginx}
MODULE=${VETTING_MODULE:-$ROOT/build/ngx_http_vetting_module.so}
GEOIP_DEFAULT=$ROOT/build/demo-country.mmdb
GEOIP_DB=${GEOIP_DB:-$GEOIP_DEFAULT}
TMPROOT=${TMPDIR:-/tmp}
STATE_FILE=$TMPROOT/vetting-demo-$PORT.state

TMP=
SERVING=0         # 1 once the demo serves: a stop asked for is a normal end
declare -A PIDS=()
ORDER=()          # start order; stopped in reverse


# messages never fail the run: its output may be a pipe that is gone
# (make run | tee log, and Ctrl-C stops tee too)
say() { printf '[demo] %s\n' "$*" 2>/dev/null || true; }
warn() { printf '[demo] %s\n' "$*" >&2 2>/dev/null || true; }


# --- stopping ---------------------------------------------------------------

# TERM, wait up to 5 s, then KILL; only the given pids.
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
        [ "$alive" = 0 ] && return 0
        sleep 0.1
    done
    for pid in "$@"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# Stops what the run started and removes its files, whatever happens
# meanwhile: output that cannot be written (SIGPIPE ignored, errors
# ignored), a second Ctrl-C (ignored: the stop takes at most 5 s).
cleanup() {
    local rc=$? i pids=() names=()
    set +e
    trap '' PIPE INT TERM
    trap - EXIT
    for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
        if [ -n "${PIDS[${ORDER[i]}]:-}" ]; then
            pids+=("${PIDS[${ORDER[i]}]}")
            names+=("${ORDER[i]}")
        fi
    done
    if [ ${#pids[@]} -gt 0 ]; then
        say "stopping ${names[*]}"
        stop_pids "${pids[@]}"
        wait 2>/dev/null
    fi
    if [ -n "$TMP" ]; then
        rm -rf "$TMP"
        if [ "$(sed -n 's/^dir=//p' "$STATE_FILE" 2>/dev/null)" = "$TMP" ]; then
            rm -f "$STATE_FILE"
        fi
        [ "$SERVING" = 1 ] && say "stopped; $TMP removed"
    fi
    exit "$rc"
}

# Ctrl-C or SIGTERM: while serving, the way to end the demo (exit 0, so
# that make run ends without "Error 130"); before, the run is cut short
stop_on_signal() {
    if [ "$SERVING" = 1 ]; then
        exit 0
    fi
    exit "$1"
}

# A run that was killed (kill -9, a closed terminal) leaves its servers
# behind. Stop those that still run from its directory, then remove it.
reap_stale() {
    local old oldpid f pid stale=()
    [ -f "$STATE_FILE" ] || return 0
    old=$(sed -n 's/^dir=//p' "$STATE_FILE")
    oldpid=$(sed -n 's/^pid=//p' "$STATE_FILE")
    if [ -n "$oldpid" ] && kill -0 "$oldpid" 2>/dev/null \
       && tr '\0' ' ' <"/proc/$oldpid/cmdline" 2>/dev/null | grep -q 'run\.sh'
    then
        warn "another demo run (pid $oldpid) serves port $PORT; stop it first, or use PORT=..."
        exit 1
    fi
    case $old in
        "$TMPROOT"/vetting-demo.*) ;;
        *) rm -f "$STATE_FILE"; return 0 ;;
    esac
    for f in "$old"/pids/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        # ours only if it still runs from the old run's directory
        case $(readlink "/proc/$pid/cwd" 2>/dev/null) in
            "$old"*) stale+=("$pid") ;;
        esac
    done
    if [ ${#stale[@]} -gt 0 ]; then
        say "stopping ${#stale[@]} process(es) left by a killed run ($old)"
        stop_pids "${stale[@]}"
    fi
    rm -rf "$old"
    rm -f "$STATE_FILE"
}


# --- starting ---------------------------------------------------------------

need() {
    command -v "$1" >/dev/null 2>&1 || { warn "$1 not found ($2)"; exit 1; }
}

show_log() {
    local f=$1
    [ -s "$f" ] || return 0
    warn "--- last lines of ${f#"$TMP"/} ---"
    tail -n 25 "$f" >&2
}

# start NAME COMMAND...: runs it in the background from $TMP (so that a later
# run can recognise it by its working directory), output to logs/NAME.log
start() {
    local name=$1
    shift
    (cd "$TMP" && exec "$@") >"$TMP/logs/$name.log" 2>&1 &
    PIDS[$name]=$!
    ORDER+=("$name")
    echo "$!" >"$TMP/pids/$name.pid"
}

# wait_ready NAME LOG CHECK...: polls CHECK for up to 20 s
wait_ready() {
    local name=$1 logf=$2 i
    shift 2
    for ((i = 0; i < 200; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            warn "$name did not start"
            show_log "$logf"
            exit 1
        fi
        sleep 0.1
    done
    warn "$name did not get ready in 20 s"
    show_log "$logf"
    exit 1
}

free_ports() {
    node -e '
        const net = require("node:net");
        const n = Number(process.argv[1]);
        const servers = [];
        const ports = [];
        const next = () => {
            if (ports.length === n) {
                console.log(ports.join(" "));
                servers.forEach((s) => s.close());
                return;
            }
            const s = net.createServer();
            servers.push(s);
            s.listen(0, "127.0.0.1", () => { ports.push(s.address().port); next(); });
        };
        next();
    ' "$1"
}

port_is_free() {
    node -e '
        const s = require("node:net").createServer();
        s.once("error", () => process.exit(1));
        s.listen(Number(process.argv[1]), "127.0.0.1", () => s.close());
    ' "$1"
}

install_node_deps() {
    local want stamp=$HERE/node_modules/.demo-lock.sha256
    want=$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    say "installing node packages (npm ci)"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
}


# --- main -------------------------------------------------------------------

need node "Debian package nodejs"
need npm "Debian package npm"
need redis-server "Debian package redis-server"
need redis-cli "Debian package redis-tools"
need curl "Debian package curl"
need "$NGINX" "Debian package nginx"

case $VETTING in
    on)
        if [ ! -f "$MODULE" ]; then
            warn "the module is not built: $MODULE"
            warn "build it with make, or run without it: VETTING=off $0"
            exit 1
        fi
        ;;
    off) ;;
    *) warn "VETTING must be on or off"; exit 2 ;;
esac

trap cleanup EXIT
trap 'stop_on_signal 130' INT
trap 'stop_on_signal 143' TERM
# our output went away (make run | tee, tee gone): stop, cleanly
trap 'exit 141' PIPE

reap_stale
if ! port_is_free "$PORT"; then
    warn "127.0.0.1:$PORT is in use; choose another with PORT=..."
    exit 1
fi

install_node_deps

# the real country database (make country-db fetches it before make run)
if [ "$VETTING" = on ] && [ "$GEOIP_DB" = "$GEOIP_DEFAULT" ] \
    && [ ! -f "$GEOIP_DB" ]
then
    "$ROOT/scripts/fetch-country-db.sh" "$GEOIP_DB" \
        || warn "could not fetch the country database; see above"
fi

ports=$(free_ports 3)
read -r REDIS_PORT AS_PORT FHIR_PORT <<<"$ports"
[ -n "$FHIR_PORT" ] || { warn "could not find free ports"; exit 1; }

TMP=$(mktemp -d "$TMPROOT/vetting-demo.XXXXXX")
# nginx workers run as nobody when started by root: they need to get in
chmod 755 "$TMP"
printf 'pid=%s\ndir=%s\nredis_port=%s\n' "$$" "$TMP" "$REDIS_PORT" >"$STATE_FILE"
mkdir -p "$TMP/logs" "$TMP/pids" "$TMP/redis" "$TMP/nginx/logs" "$TMP/nginx/temp"

PUBLIC=http://127.0.0.1:$PORT
NGX=$TMP/nginx

say "temporary directory $TMP"
say "gateway $PUBLIC  (module: $VETTING)"

start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save '' --appendonly no --dir "$TMP/redis" --daemonize no \
    --logfile ''
wait_ready redis "$TMP/logs/redis.log" redis-cli -p "$REDIS_PORT" ping
say "redis         127.0.0.1:$REDIS_PORT"

start auth node "$HERE/authserver.js" --port "$AS_PORT" \
    --issuer "$PUBLIC/oauth2" --fhir-base "$PUBLIC/fhir/r4" \
    --public-port "$PORT" --state-dir "$TMP"

start fhir node "$HERE/fhirserver.js" --port "$FHIR_PORT" \
    --public-base "$PUBLIC" --as-url "http://127.0.0.1:$AS_PORT/oauth2"

wait_ready auth "$TMP/logs/auth.log" \
    curl -fsS "http://127.0.0.1:$AS_PORT/oauth2/.well-known/openid-configuration"
say "auth server   127.0.0.1:$AS_PORT  (issuer $PUBLIC/oauth2)"
wait_ready fhir "$TMP/logs/fhir.log" \
    curl -fsS "http://127.0.0.1:$FHIR_PORT/fhir/r4/metadata"
say "FHIR server   127.0.0.1:$FHIR_PORT  (base $PUBLIC/fhir/r4)"

# the configuration: placeholders filled, parts dropped as needed
filters=(-e '')
if [ "$VETTING" = off ]; then
    filters=(-e '/vetting_/d' -e '/^load_module/d')
elif [ ! -f "$GEOIP_DB" ]; then
    say "no country database at $GEOIP_DB: vetting_geoip left out"
    say "(scripts/fetch-country-db.sh, or make country-db, fetches one)"
    filters=(-e '/vetting_geoip/d')
else
    say "country database $GEOIP_DB"
fi
sed "${filters[@]}" "$HERE/nginx.conf.in" | sed \
    -e "s|@PREFIX@|$NGX|g" -e "s|@MODULE@|$MODULE|g" \
    -e "s|@PORT@|$PORT|g" -e "s|@AS_PORT@|$AS_PORT|g" \
    -e "s|@FHIR_PORT@|$FHIR_PORT|g" -e "s|@REDIS_PORT@|$REDIS_PORT|g" \
    -e "s|@GEOIP_DB@|$GEOIP_DB|g" >"$NGX/nginx.conf"

if ! "$NGINX" -t -q -p "$NGX/" -e "$NGX/logs/error.log" \
    -c "$NGX/nginx.conf" >"$TMP/logs/nginx-t.log" 2>&1
then
    warn "nginx rejects the generated configuration:"
    cat "$TMP/logs/nginx-t.log" >&2
    # show the line it names, with its neighbours
    line=$(grep -o 'nginx\.conf:[0-9]*' "$TMP/logs/nginx-t.log" | head -n 1 | cut -d: -f2)
    if [ -n "$line" ]; then
        warn "--- nginx.conf around line $line ---"
        awk -v n="$line" 'NR >= n - 3 && NR <= n + 3 { printf "%4d  %s\n", NR, $0 }' \
            "$NGX/nginx.conf" >&2
    fi
    exit 1
fi
start nginx "$NGINX" -p "$NGX/" -e "$NGX/logs/error.log" \
    -c "$NGX/nginx.conf" -g 'daemon off; master_process on;'
wait_ready nginx "$NGX/logs/error.log" curl -fsS "$PUBLIC/fhir/r4/metadata"
say "nginx         $PUBLIC  (logs in $NGX/logs)"

say "replaying the demo traffic"
replay=0
node "$HERE/traffic.js" --base "$PUBLIC" \
    --access-log "$NGX/logs/access.jsonl" \
    --jwt-key "$TMP/secrets/abroad-app.private.jwk.json" \
    --vetting "$VETTING" \
    --geoip "$([ "$VETTING" = on ] && [ -f "$GEOIP_DB" ] && echo on || echo off)" \
    || replay=$?
if [ "$replay" != 0 ]; then
    warn "the traffic replay found behaviour that must not happen (exit $replay)"
fi

if [ "$ONCE" = 1 ]; then
    exit "$replay"
fi

# the review command, as the one running make run can type it
REVIEW=$ROOT/scripts/vetting-review
if [ "$(pwd)" = "$ROOT" ]; then
    REVIEW=scripts/vetting-review
fi

node "$HERE/traffic.js" --base "$PUBLIC" --walkthrough \
    --review "$REVIEW -p $REDIS_PORT"

cat <<EOF

Logs:      $NGX/logs/access.jsonl  (JSON, one line per request)
           $NGX/logs/error.log, $TMP/logs/{auth,fhir,redis}.log
           $NGX/logs/vetting-audit.jsonl  (AuditEvents, with the module)
Replay:    node $HERE/traffic.js --base $PUBLIC \\
               --access-log $NGX/logs/access.jsonl \\
               --jwt-key $TMP/secrets/abroad-app.private.jwk.json
           (a second replay meets apps that are already suspended)
Review:    $REVIEW -p $REDIS_PORT list
           (show APP, reinstate APP --reviewer NAME, confirm, audit,
           notifications: see "Reviewing suspensions" in README.md)

Serving on $PUBLIC until Ctrl-C.
EOF
SERVING=1

# serve; a server that dies takes the demo down
while :; do
    exited=
    if ! wait -n -p exited "${PIDS[@]}"; then
        :
    fi
    if [ -n "$exited" ]; then
        for name in "${!PIDS[@]}"; do
            if [ "${PIDS[$name]}" = "$exited" ]; then
                warn "$name exited unexpectedly"
                case $name in
                    nginx) show_log "$NGX/logs/error.log" ;;
                    *) show_log "$TMP/logs/$name.log" ;;
                esac
                unset "PIDS[$name]"
            fi
        done
        exit 1
    fi
done
