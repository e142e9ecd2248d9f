#!/usr/bin/env bash
# run-interop.sh BIN — the Azure SDK for JavaScript interop tests (tests/interop).
#
# Starts `BIN server --dev` on a free loopback port with a fresh data directory,
# provisions principals, tokens, a subscription and three vaults over the API
# (curl), exports what the tests need as CKEY_* variables and runs
# `node --test` in tests/interop. The server is stopped (SIGTERM) and the data
# directory removed on exit; the server log tail is printed when tests fail.
# The exit status is node's.
#
#   CKEY_INTEROP_KEEP=1   keep the data directory (its path is printed)
#   CKEY_INTEROP_ARGS     extra arguments for `node --test` (e.g. a file name)
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 path/to/ckey" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
INTEROP="$ROOT/tests/interop"
[ -x "$BIN" ] || { echo "run-interop: $BIN is not an executable" >&2; exit 2; }
command -v node >/dev/null || { echo "run-interop: node (>= 20) is needed" >&2; exit 2; }
command -v npm >/dev/null || { echo "run-interop: npm is needed" >&2; exit 2; }
command -v curl >/dev/null || { echo "run-interop: curl is needed" >&2; exit 2; }

# ---------- npm dependencies ----------
if [ ! -d "$INTEROP/node_modules" ] || [ "$INTEROP/package-lock.json" -nt "$INTEROP/node_modules" ]; then
    echo "run-interop: npm ci in tests/interop"
    (cd "$INTEROP" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$INTEROP/node_modules"
fi

# ---------- server ----------
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ckey-interop.XXXXXX")
PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
URL="https://127.0.0.1:$PORT"
SERVER_PID=""
STATUS=0

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    STATUS=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "run-interop: the server did not stop within 10 s of SIGTERM" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        local server_rc=0
        wait "$SERVER_PID" 2>/dev/null || server_rc=$?
        [ "$server_rc" -eq 0 ] || echo "run-interop: the server exited with status $server_rc after SIGTERM" >&2
    fi
    if [ "$STATUS" -ne 0 ] && [ -f "$DIR/server.log" ]; then
        if grep -q '"level":"\(error\|warn\)"' "$DIR/server.log"; then
            echo "---- run-interop: server errors and warnings ----" >&2
            grep '"level":"\(error\|warn\)"' "$DIR/server.log" | tail -n 40 >&2 || true
        fi
        echo "---- run-interop: last 40 lines of the server log ----" >&2
        tail -n 40 "$DIR/server.log" >&2 || true
        echo "------------------------------------------------------" >&2
    fi
    if [ "${CKEY_INTEROP_KEEP:-0}" = 1 ]; then
        echo "run-interop: kept $DIR" >&2
    else
        rm -rf "$DIR"
    fi
    exit "$STATUS"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$BIN" server --dev --data-dir "$DIR" --listen "127.0.0.1:$PORT" --default-vault interop-a \
    --housekeeping-interval 1 >"$DIR/server.log" 2>&1 &
SERVER_PID=$!

for i in $(seq 1 100); do
    if [ -f "$DIR/tls/cert.pem" ] &&
        curl -fsS --cacert "$DIR/tls/cert.pem" "$URL/healthz" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "run-interop: the server exited during start-up" >&2
        exit 1
    fi
    [ "$i" -lt 100 ] || { echo "run-interop: the server did not answer /healthz in 10 s" >&2; exit 1; }
    sleep 0.1
done

CACERT="$DIR/tls/cert.pem"
OPERATOR_TOKEN=$(cat "$DIR/operator.token")

# api METHOD PATH TOKEN [JSON]: the response body; fails on a non-2xx answer.
api() {
    local method=$1 path=$2 token=$3 body=${4:-} out code
    out=$(mktemp "$DIR/resp.XXXXXX")
    code=$(curl -sS --cacert "$CACERT" -o "$out" -w '%{http_code}' -X "$method" \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        ${body:+--data "$body"} "$URL$path")
    if [ "${code:0:1}" != 2 ]; then
        echo "run-interop: $method $path answered $code: $(cat "$out")" >&2
        rm -f "$out"
        return 1
    fi
    cat "$out"
    rm -f "$out"
}

# field JSON NAME: a top-level string field of a JSON object.
field() {
    node -e 'const o=JSON.parse(process.argv[1]);const v=o[process.argv[2]];if(v===undefined)process.exit(1);console.log(v)' "$1" "$2"
}

ALICE=$(api POST /admin/principals "$OPERATOR_TOKEN" '{"userPrincipalName":"alice@contoso.com"}')
BOB=$(api POST /admin/principals "$OPERATOR_TOKEN" '{"userPrincipalName":"bob@contoso.com"}')
CAROL=$(api POST /admin/principals "$OPERATOR_TOKEN" '{"userPrincipalName":"carol@contoso.com"}')
APP=$(api POST /admin/principals "$OPERATOR_TOKEN" '{"displayName":"Contoso Sync App"}')
ALICE_OID=$(field "$ALICE" objectId)
BOB_OID=$(field "$BOB" objectId)
CAROL_OID=$(field "$CAROL" objectId)
APP_OID=$(field "$APP" objectId)
APP_ID=$(field "$APP" applicationId)
TENANT_ID=$(field "$ALICE" tenantId)

token_for() {
    field "$(api POST /admin/tokens "$OPERATOR_TOKEN" "{\"principal\":\"$1\",\"ttl\":7200}")" token
}
ALICE_TOKEN=$(token_for alice@contoso.com)
BOB_TOKEN=$(token_for bob@contoso.com)
CAROL_TOKEN=$(token_for carol@contoso.com)
APP_TOKEN=$(token_for "$APP_ID")

api PUT /admin/subscriptions/sub1 "$OPERATOR_TOKEN" '{"owners":["alice@contoso.com"]}' >/dev/null

# Alice: everything. Bob: a working set without unwrapKey (and without purge).
# Carol: cryptography only, no get (the SDK then goes remote-only).
# The mail service: what a customer key grant gives it (by objectId alone: an
# entry that also names an applicationId is a compound identity, see docs/vault.md).
POLICIES=$(cat <<EOF
[{"tenantId":"$TENANT_ID","objectId":"$ALICE_OID","permissions":{"keys":["all"]}},
 {"tenantId":"$TENANT_ID","objectId":"$BOB_OID","permissions":{"keys":["get","list","create","encrypt","decrypt","wrapKey","sign","verify"]}},
 {"tenantId":"$TENANT_ID","objectId":"$CAROL_OID","permissions":{"keys":["encrypt","decrypt","wrapKey","unwrapKey","sign","verify"]}},
 {"tenantId":"$TENANT_ID","objectId":"$APP_OID","permissions":{"keys":["get","wrapKey","unwrapKey"]}}]
EOF
)
create_vault() { # NAME LOCATION PURGE_PROTECTION
    api PUT "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/$1?api-version=2023-02-01" \
        "$ALICE_TOKEN" "{\"location\":\"$2\",\"properties\":{\"tenantId\":\"$TENANT_ID\",
          \"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"accessPolicies\":$POLICIES,
          \"enablePurgeProtection\":$3}}" >/dev/null
}
create_vault interop-a westus false
create_vault interop-pp westus true
create_vault interop-eu northeurope false

# ---------- tests ----------
export NODE_EXTRA_CA_CERTS="$CACERT"
export CKEY_BIN="$BIN" CKEY_DATA_DIR="$DIR" CKEY_URL="$URL" CKEY_PORT="$PORT"
export CKEY_OPERATOR_TOKEN="$OPERATOR_TOKEN"
export CKEY_ALICE_TOKEN="$ALICE_TOKEN" CKEY_BOB_TOKEN="$BOB_TOKEN" CKEY_CAROL_TOKEN="$CAROL_TOKEN"
export CKEY_APP_TOKEN="$APP_TOKEN"
export CKEY_ALICE_OID="$ALICE_OID" CKEY_BOB_OID="$BOB_OID" CKEY_CAROL_OID="$CAROL_OID"
export CKEY_APP_OID="$APP_OID"
export CKEY_APP_ID="$APP_ID" CKEY_TENANT_ID="$TENANT_ID"
export CKEY_SUBSCRIPTION=sub1 CKEY_RESOURCE_GROUP=rg1
export CKEY_VAULT_A=interop-a CKEY_VAULT_PP=interop-pp CKEY_VAULT_EU=interop-eu

echo "run-interop: server on $URL (data in $DIR), running node --test"
set +e
# shellcheck disable=SC2086
(cd "$INTEROP" && node --test ${CKEY_INTEROP_ARGS:-})
STATUS=$?
set -e
exit "$STATUS"
