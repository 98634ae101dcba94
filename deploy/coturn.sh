#!/bin/sh
# coturn (docker-compose service "coturn"; README, "Deployment") with TURN over TLS on
# TURN_TLS_PORT as soon as there is a certificate for it in TURN_TLS_DIR (put there by
# deploy/turn-tls-sync.sh from Caddy's, with the "proxy" or "cluster" profile). Until
# then it serves TURN over UDP and TCP only (--no-tls). The certificate's arrival
# restarts turnserver once, with the TLS listener; a renewal is reloaded in place
# (SIGUSR2: coturn re-reads --cert/--pkey, allocations carry on). The arguments are
# turnserver's.
set -u

dir="${TURN_TLS_DIR:-/turn-tls}"
port="${TURN_TLS_PORT:-5349}"
poll="${TURN_TLS_POLL_S:-5}"

serial() {
	cat "$dir/serial" 2>/dev/null || true
}

child=""
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; [ -n "$child" ] && wait "$child"; exit 0' TERM INT

while :; do
	served="$(serial)"
	if [ -n "$served" ]; then
		echo "coturn.sh: TURN over TLS on port $port"
		turnserver "$@" --cert="$dir/cert.pem" --pkey="$dir/key.pem" --tls-listening-port="$port" &
	else
		echo "coturn.sh: no certificate in $dir yet: no TURN over TLS"
		turnserver "$@" --no-tls &
	fi
	child=$!
	restart=""
	while kill -0 "$child" 2>/dev/null; do
		sleep "$poll" &
		wait $! || true
		now="$(serial)"
		[ "$now" = "$served" ] && continue
		if [ -n "$served" ] && [ -n "$now" ]; then
			echo "coturn.sh: certificate renewed: reloading it"
			kill -USR2 "$child"
			served="$now"
		else
			echo "coturn.sh: a certificate came (or went): restarting turnserver"
			restart=yes
			kill -TERM "$child"
			wait "$child" || true
			break
		fi
	done
	if [ -z "$restart" ]; then
		wait "$child"
		exit $?
	fi
done
