#!/usr/bin/env bash
# make demo: the ERP with the module, demo data and the web client, on the
# embedded SQLite default. Creates the database on first start only.
set -euo pipefail
cd "$(dirname "$0")/.."
export TRYTOND_CONFIG=etc/demo.conf
# SQLite wants an absolute path; the web root is made absolute alike.
export TRYTOND_DATABASE__PATH="$PWD/var/demo" TRYTOND_WEB__ROOT="$PWD/var/sao"
# The demo serves plain http on 127.0.0.1; oauthlib (the API's OAuth flow)
# refuses that unless told. Production runs behind TLS without it.
export OAUTHLIB_INSECURE_TRANSPORT=1
DB=payt_demo
BIN=.venv/bin
ADMIN_PASSWORD=payt-admin-2026
mkdir -p var/demo var/mail var/log

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

wait_for_port() {  # host port seconds
    for _ in $(seq "$3"); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 1
    done
    echo "Nothing listens on $1:$2; see var/log/" >&2; return 1
}

"$BIN/payt" mailcatcher --port 8025 --dir var/mail >var/log/mail.log 2>&1 &
pids+=($!)
# Online payments go to a local simulator of Mollie's API.
export TRYTOND_PAYT__MOLLIE_API_ENDPOINT=http://127.0.0.1:8026
"$BIN/payt-hub" simulate mollie --port 8026 >var/log/mollie.log 2>&1 &
pids+=($!)
# Posted letters (also the case letters) go to a print-and-mail simulator.
export TRYTOND_PAYT_CHANNELS__PRINTMAIL_URL=http://127.0.0.1:8093
export TRYTOND_PAYT_CHANNELS__PRINTMAIL_KEY=sim-printmail-key
"$BIN/payt-hub" simulate printmail --port 8093 >var/log/printmail.log 2>&1 &
pids+=($!)
wait_for_port 127.0.0.1 8025 20
wait_for_port 127.0.0.1 8026 20
wait_for_port 127.0.0.1 8093 20

if [ ! -f "var/demo/$DB.sqlite" ]; then
    echo "Creating the demo database (about a minute) ..."
    passfile=$(mktemp)
    echo "$ADMIN_PASSWORD" >"$passfile"
    touch "var/demo/$DB.sqlite"
    TRYTONPASSFILE="$passfile" "$BIN/trytond-admin" -d "$DB" --all \
        --email admin@payt.example -u payt_dunning --activate-dependencies \
        >var/log/admin.log 2>&1 || { rm -f "$passfile" "var/demo/$DB.sqlite"; \
        echo "trytond-admin failed: see var/log/admin.log" >&2; exit 1; }
    rm -f "$passfile"
    "$BIN/payt" demo -d "$DB"
    if [ -x scripts/demo-hub.sh ]; then scripts/demo-hub.sh "$DB"; fi
fi

read -r API_ADMINISTRATION API_TOKEN < <("$BIN/python" scripts/demo-api-token.py "$DB" 2>>var/log/admin.log | tail -1)

"$BIN/trytond-cron" -d "$DB" >var/log/cron.log 2>&1 &
pids+=($!)

cat <<TXT

  Payt debtor management is starting on http://127.0.0.1:8000/
    database: $DB
    user:     admin        password: $ADMIN_PASSWORD
    also:     anna (debtor management, one company), consultant (both)
              password: payt-demo-2026
  REST API (Payt-compatible) base URL: http://127.0.0.1:8000/$DB/api
    token (new each start): $API_TOKEN
    try: curl -H "Authorization: Bearer $API_TOKEN" \\
      "http://127.0.0.1:8000/$DB/api/v1/invoices?administration_id=$API_ADMINISTRATION"
  Emails the run sends land in var/mail/ (a local SMTP catcher).
  Stop with Ctrl-C. Start afresh with: make demo-reset demo

TXT
"$BIN/trytond" -d "$DB" 2>var/log/trytond.log &
server=$!
pids+=($server)
wait "$server"
