#!/bin/sh
# Hands Caddy's certificate for VTP_DOMAIN to coturn (docker-compose service "turn-tls";
# README, "Deployment"). Caddy keeps its certificates readable by root only, and coturn
# runs unprivileged: this copies the certificate and key into the volume coturn and VTP
# mount (TURN_TLS_DIR), owned by coturn's user (TURN_TLS_OWNER) with the key readable by
# it alone, whenever Caddy has obtained or renewed them. "serial" is written last, once
# both files are in place: coturn (deploy/coturn.sh) watches it, never a half-copied pair.
# TURN_TLS_INTERVAL_S=0: copy once and exit (tests).
set -eu

: "${VTP_DOMAIN:?VTP_DOMAIN is not set}"
certificates="${CADDY_DATA:-/data}/caddy/certificates"
out="${TURN_TLS_DIR:-/turn-tls}"
owner="${TURN_TLS_OWNER:-65534:65534}"
interval="${TURN_TLS_INTERVAL_S:-60}"

place() {  # source, name, mode: a file coturn's user reads, replaced in one rename
	cp "$1" "$out/.$2.new"
	chown "$owner" "$out/.$2.new"
	chmod "$3" "$out/.$2.new"
	mv -f "$out/.$2.new" "$out/$2"
}

sync_once() {
	# one directory per issuer: a public CA's (acme-*, in glob order before "local",
	# Caddy's own CA for "tls internal") wins when both are there
	for dir in "$certificates"/*/"$VTP_DOMAIN"; do
		crt="$dir/$VTP_DOMAIN.crt"
		key="$dir/$VTP_DOMAIN.key"
		[ -s "$crt" ] && [ -s "$key" ] || continue
		if cmp -s "$crt" "$out/cert.pem" && cmp -s "$key" "$out/key.pem"; then
			return 0
		fi
		place "$key" key.pem 0400
		place "$crt" cert.pem 0444
		cat "$out/cert.pem" "$out/key.pem" | cksum | cut -d' ' -f1 > "$out/.serial.new"
		chmod 0444 "$out/.serial.new"
		mv -f "$out/.serial.new" "$out/serial"
		echo "turn-tls: the certificate for $VTP_DOMAIN from $dir is in $out"
		return 0
	done
	return 0
}

umask 077
mkdir -p "$out"
chmod 0755 "$out"
while :; do
	sync_once
	[ "$interval" = 0 ] && exit 0
	sleep "$interval"
done
