#!/bin/sh
# mkcerts.sh: mint the certificates of a kioskd fleet with openssl alone.
#
#   mkcerts.sh ca       DIR                  the fleet CA: DIR/ca.pem, DIR/ca.key
#   mkcerts.sh server   DIR HOSTNAME [NAME|IP ...]
#                                            the broker: DIR/server.pem, DIR/server.key
#   mkcerts.sh kiosk    DIR ID               a kiosk: DIR/ID.pem, DIR/ID.key
#   mkcerts.sh operator DIR NAME             an operator's console: DIR/operator[-NAME].pem/.key
#   mkcerts.sh ingest   DIR                  the sales ingest: DIR/ingest.pem, DIR/ingest.key
#
# The broker (deploy/mosquitto/mosquitto.conf) takes a client certificate's
# Common Name as the MQTT user name, and the ACL (deploy/mosquitto/acl) gives
# a kiosk the topics kiosk/<CN>/#. So the CN is the identity, and only what
# this CA signs can connect: keep DIR/ca.key off the broker, on the machine
# (or the USB stick) the fleet's certificates are minted on.
#
# Keys are ECDSA P-256. The CA lasts 10 years, the others 825 days. Nothing
# is overwritten: a second `ca` into the same DIR, or a kiosk that already
# has a certificate there, is refused (delete both files to mint again).
set -eu

CA_DAYS=${CA_DAYS:-3650}
LEAF_DAYS=${LEAF_DAYS:-825}

usage() {
	cat >&2 <<'EOF'
usage: mkcerts.sh ca       DIR
       mkcerts.sh server   DIR HOSTNAME [NAME|IP ...]
       mkcerts.sh kiosk    DIR ID
       mkcerts.sh operator DIR NAME
       mkcerts.sh ingest   DIR
EOF
	exit 2
}

die() {
	echo "mkcerts: $*" >&2
	exit 1
}

# valid_id: letters, digits, '.', '_' and '-', at most 64, starting with a
# letter or digit: the kiosk id rule kioskd itself applies (a subset of
# [A-Za-z0-9._-]{1,64}; a leading '-' or '.' would read as an option or a
# hidden file).
valid_id() {
	case $1 in
	'' | *[!A-Za-z0-9._-]* | [!A-Za-z0-9]*) return 1 ;;
	esac
	[ "${#1}" -le 64 ]
}

# reserved: names the ACL gives their own rights. A kiosk with one of them
# would be that user, or shadow one minted later.
reserved() {
	case $1 in
	operator | operator-* | ingest | ingest-*) return 0 ;;
	esac
	return 1
}

is_ip() {
	case $1 in
	*:*) return 0 ;; # IPv6
	*[!0-9.]*) return 1 ;;
	*.*.*.*) return 0 ;;
	esac
	return 1
}

need_ca() {
	[ -f "$dir/ca.pem" ] && [ -f "$dir/ca.key" ] ||
		die "no CA in $dir (ca.pem and ca.key); run: $0 ca $dir"
}

refuse_existing() {
	for f in "$dir/$1.pem" "$dir/$1.key"; do
		[ ! -e "$f" ] || die "$f exists; delete $1.pem and $1.key to mint $1 again"
	done
}

newkey() {
	(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null) ||
		die "openssl could not make an ECDSA P-256 key"
}

# sign NAME CN EXTENSIONS: a key, a request and a certificate signed by the
# CA, with the given v3 extension lines.
sign() {
	name=$1 cn=$2 ext=$3
	refuse_existing "$name"
	cat >"$tmp/req.cnf" <<EOF
[req]
prompt = no
distinguished_name = dn
[dn]
O = kioskd fleet
CN = $cn
[ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
$ext
EOF
	newkey "$tmp/$name.key"
	openssl req -new -config "$tmp/req.cnf" -key "$tmp/$name.key" -out "$tmp/$name.csr" ||
		die "openssl req failed for $cn"
	openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days "$LEAF_DAYS" -sha256 \
		-extfile "$tmp/req.cnf" -extensions ext -out "$tmp/$name.pem" 2>/dev/null ||
		die "openssl x509 could not sign $cn"
	# Move the pair in only once both exist, so a failure leaves nothing half made.
	mv "$tmp/$name.key" "$dir/$name.key"
	mv "$tmp/$name.pem" "$dir/$name.pem"
	echo "mkcerts: $dir/$name.pem and $dir/$name.key (CN=$cn, $LEAF_DAYS days)"
}

command -v openssl >/dev/null 2>&1 || die "openssl not found (apt-get install openssl)"

[ $# -ge 2 ] || usage
cmd=$1 dir=$2
shift 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mkcerts.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

case $cmd in
ca)
	[ $# -eq 0 ] || usage
	for f in "$dir/ca.pem" "$dir/ca.key"; do
		[ ! -e "$f" ] || die "$f exists: refusing to replace the fleet CA (every certificate it signed would stop working)"
	done
	mkdir -p "$dir"
	chmod 700 "$dir"
	cat >"$tmp/ca.cnf" <<EOF
[req]
prompt = no
distinguished_name = dn
x509_extensions = ext
[dn]
O = kioskd fleet
CN = kioskd fleet CA
[ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
	newkey "$tmp/ca.key"
	openssl req -new -x509 -config "$tmp/ca.cnf" -key "$tmp/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days "$CA_DAYS" -sha256 -out "$tmp/ca.pem" ||
		die "openssl could not make the CA certificate"
	mv "$tmp/ca.key" "$dir/ca.key"
	mv "$tmp/ca.pem" "$dir/ca.pem"
	echo "mkcerts: $dir/ca.pem and $dir/ca.key ($CA_DAYS days); keep ca.key secret and off the broker"
	;;
server)
	[ $# -ge 1 ] || usage
	need_ca
	host=$1
	valid_id "$host" || is_ip "$host" || die "bad host name \"$host\""
	san=
	for n in "$@"; do
		if is_ip "$n"; then
			san="$san${san:+, }IP:$n"
		elif valid_id "$n"; then
			san="$san${san:+, }DNS:$n"
		else
			die "bad host name or IP address \"$n\""
		fi
	done
	sign server "$host" "extendedKeyUsage = serverAuth
subjectAltName = $san"
	;;
kiosk)
	[ $# -eq 1 ] || usage
	need_ca
	id=$1
	valid_id "$id" || die "bad kiosk id \"$id\": letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit"
	! reserved "$id" || die "kiosk id \"$id\" is reserved for the fleet's own users (operator, operator-*, ingest, ingest-*)"
	[ "$id" != ca ] && [ "$id" != server ] || die "kiosk id \"$id\" would overwrite the $id files; pick another"
	sign "$id" "$id" "extendedKeyUsage = clientAuth"
	;;
operator)
	[ $# -eq 1 ] || usage
	need_ca
	case $1 in
	operator | operator-*) cn=$1 ;;
	*) cn=operator-$1 ;;
	esac
	valid_id "$cn" || die "bad operator name \"$1\""
	sign "$cn" "$cn" "extendedKeyUsage = clientAuth"
	if [ "$cn" != operator ]; then
		cat <<EOF
mkcerts: the shipped ACL knows only the user "operator". Give $cn the same
rights by adding this block to the broker's acl file, then reload Mosquitto
(systemctl reload mosquitto); until then $cn can do no more than a kiosk:

user $cn
topic deny kiosk/$cn/#
topic read kiosk/#
topic read \$SYS/#
topic write kiosk/+/cmd
topic write kiosk/+/ota
topic write fleet/cmd
EOF
	fi
	;;
ingest)
	[ $# -eq 0 ] || usage
	need_ca
	sign ingest ingest "extendedKeyUsage = clientAuth"
	;;
*)
	usage
	;;
esac
