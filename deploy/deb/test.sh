#!/bin/sh
# test.sh: check the packages make deb built. Not part of make test: it
# needs the packages, dpkg-deb and od.
#
#   deploy/deb/test.sh [DEB...]      default: dist/kioskd_*.deb
#
# For each package: the files and their modes, the binaries' ELF class and
# machine (and GOARM=6 for armhf), the conffiles, the control fields, the
# md5sums, the maintainer scripts (sh -n, set -e, every $1 dpkg passes), the
# default config's kiosk id left to the host name, and the unit files with
# systemd-analyze verify when it is installed. With qemu-user-static the
# binaries run: --version, and kioskd on the sim board with the packaged
# config until /healthz answers 200.
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.." || exit 1

failures=0
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}
ok() { echo "ok: $*"; }

tmp=$(mktemp -d)
pid=
cleanup() {
	[ -z "$pid" ] || kill "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# mode FILE prints its permission bits, e.g. 755.
mode() { stat -c %a "$1"; }

# elf FILE prints "CLASS MACHINE" from the ELF header: class 1 (32-bit) or 2
# (64-bit) at byte 4, e_machine (little-endian u16) at byte 18.
elf() {
	magic=$(od -An -tx1 -N4 "$1" | tr -d ' \n')
	[ "$magic" = 7f454c46 ] || {
		echo "not-elf"
		return
	}
	class=$(od -An -tu1 -j4 -N1 "$1" | tr -d ' ')
	machine=$(od -An -tu2 -j18 -N2 --endian=little "$1" | tr -d ' ')
	echo "$class $machine"
}

check_deb() {
	deb=$1
	name=$(basename "$deb" .deb)
	arch=${name##*_}
	echo "== $name"
	d=$tmp/$name
	mkdir -p "$d/root" "$d/DEBIAN"
	dpkg-deb -x "$deb" "$d/root" || {
		fail "$deb: dpkg-deb -x"
		return
	}
	dpkg-deb -e "$deb" "$d/DEBIAN" || {
		fail "$deb: dpkg-deb -e"
		return
	}
	r=$d/root

	# Files and modes.
	for f in usr/bin/kioskd:755 usr/bin/kioskctl:755 usr/libexec/kioskd/kiosk-ui:755 \
		usr/lib/systemd/system/kioskd.service:644 usr/lib/systemd/system/kiosk-ui.service:644 \
		usr/lib/udev/rules.d/60-kioskd.rules:644 usr/share/polkit-1/rules.d/50-kioskd.rules:644 etc/kioskd/kioskd.toml:644 \
		etc/default/kiosk-ui:644 usr/share/doc/kioskd/copyright:644 \
		usr/share/doc/kioskd/changelog.Debian.gz:644; do
		path=${f%:*}
		want=${f##*:}
		if [ ! -f "$r/$path" ]; then
			fail "$name: /$path missing"
		elif [ "$(mode "$r/$path")" != "$want" ]; then
			fail "$name: /$path mode $(mode "$r/$path"), want $want"
		fi
	done
	[ ! -e "$r/var/lib/kioskd" ] || fail "$name: ships /var/lib/kioskd (purge would try to remove the ledger's directory)"
	if dpkg-deb -c "$deb" | awk '{print $2}' | grep -qv '^root/root$'; then
		fail "$name: files not owned by root/root"
	fi
	ok "$name: files and modes"

	# Binaries: static, for the package's architecture.
	case $arch in
	arm64) want_elf="2 183" qemu=qemu-aarch64-static ;;
	armhf) want_elf="1 40" qemu=qemu-arm-static ;;
	*)
		fail "$name: unexpected architecture $arch"
		return
		;;
	esac
	for b in kioskd kioskctl; do
		got=$(elf "$r/usr/bin/$b")
		[ "$got" = "$want_elf" ] || fail "$name: $b is ELF '$got', want '$want_elf' ($arch)"
		if command -v file >/dev/null 2>&1; then
			file -b "$r/usr/bin/$b" | grep -q 'statically linked' || fail "$name: $b is not statically linked"
		fi
	done
	if [ "$arch" = armhf ] && command -v go >/dev/null 2>&1; then
		go version -m "$r/usr/bin/kioskd" | grep -q 'GOARM=6' || fail "$name: kioskd not built with GOARM=6"
	fi
	ok "$name: binaries are static $arch ELF"

	# Control.
	c=$d/DEBIAN/control
	for field in Package:kioskd "Architecture:$arch" Maintainer: Installed-Size: Depends: Description:; do
		grep -q "^${field%%:*}: *${field#*:}" "$c" || fail "$name: control lacks ${field%%:*} ${field#*:}"
	done
	version=$(sed -n 's/^Version: //p' "$c")
	case $name in kioskd_"$(echo "$version" | sed 's/^[0-9]*://')"_"$arch") ;; *) fail "$name: file name does not match Version $version" ;; esac
	ok "$name: control ($version)"

	# Conffiles: exactly these, and each one shipped.
	printf '%s\n' /etc/default/kiosk-ui /etc/kioskd/kioskd.toml >"$tmp/want-conffiles"
	if sort "$d/DEBIAN/conffiles" | cmp -s - "$tmp/want-conffiles"; then
		ok "$name: conffiles"
	else
		fail "$name: conffiles are $(tr '\n' ' ' <"$d/DEBIAN/conffiles")"
	fi
	while read -r cf; do
		[ -f "$r$cf" ] || fail "$name: conffile $cf not in the package"
	done <"$d/DEBIAN/conffiles"

	# md5sums cover every file and match.
	if (cd "$r" && md5sum --quiet -c "$d/DEBIAN/md5sums"); then
		n=$(cd "$r" && find . -type f | wc -l)
		[ "$n" -eq "$(wc -l <"$d/DEBIAN/md5sums")" ] || fail "$name: md5sums lists $(wc -l <"$d/DEBIAN/md5sums") of $n files"
		ok "$name: md5sums"
	else
		fail "$name: md5sums do not match"
	fi

	# Maintainer scripts: POSIX sh that parses, stops on errors, and knows
	# every argument dpkg passes it.
	for s in postinst prerm postrm; do
		f=$d/DEBIAN/$s
		[ -x "$f" ] || fail "$name: $s missing or not executable"
		[ "$(head -n1 "$f")" = "#!/bin/sh" ] || fail "$name: $s is not #!/bin/sh"
		sh -n "$f" || fail "$name: $s: sh -n"
		if command -v dash >/dev/null 2>&1; then dash -n "$f" || fail "$name: $s: dash -n"; fi
		grep -q '^set -e$' "$f" || fail "$name: $s lacks set -e"
		# shellcheck disable=SC2016 # a literal $1
		grep -q 'case "\$1" in' "$f" || fail "$name: $s does not check \$1"
	done
	for a in configure abort-upgrade abort-remove abort-deconfigure; do
		grep -q "$a" "$d/DEBIAN/postinst" || fail "$name: postinst ignores $a"
	done
	for a in remove upgrade deconfigure failed-upgrade; do
		grep -q "$a" "$d/DEBIAN/prerm" || fail "$name: prerm ignores $a"
	done
	for a in remove purge upgrade failed-upgrade abort-install abort-upgrade disappear; do
		grep -q "$a" "$d/DEBIAN/postrm" || fail "$name: postrm ignores $a"
	done
	if grep -Eq '^[^#]*rm [^#]*/var/lib/kioskd' "$d/DEBIAN/postrm"; then
		fail "$name: postrm deletes the ledger"
	fi
	sh -n "$r/usr/libexec/kioskd/kiosk-ui" || fail "$name: kiosk-ui: sh -n"
	ok "$name: maintainer scripts"

	# The default config leaves the kiosk id to the host name.
	if grep -q '^kiosk_id' "$r/etc/kioskd/kioskd.toml"; then
		fail "$name: kioskd.toml sets kiosk_id: every kiosk would share it"
	else
		ok "$name: kioskd.toml leaves kiosk_id to the host name"
	fi

	# Units: systemd-analyze verify checks every setting and that the
	# commands exist, so point them at the extracted package.
	if command -v systemd-analyze >/dev/null 2>&1; then
		mkdir -p "$d/units"
		for u in kioskd.service kiosk-ui.service; do
			sed -e "s|/usr/bin/kioskd|$r/usr/bin/kioskd|g" \
				-e "s|/usr/libexec/kioskd/kiosk-ui|$r/usr/libexec/kioskd/kiosk-ui|g" \
				"$r/usr/lib/systemd/system/$u" >"$d/units/$u"
		done
		if out=$(systemd-analyze verify "$d/units/kioskd.service" "$d/units/kiosk-ui.service" 2>&1) &&
			[ -z "$out" ]; then
			ok "$name: systemd-analyze verify"
		else
			fail "$name: systemd-analyze verify: $out"
		fi
	fi

	# Run the binaries under qemu-user, if it is here.
	if command -v "$qemu" >/dev/null 2>&1; then
		v=$("$qemu" "$r/usr/bin/kioskd" --version 2>&1) || fail "$name: kioskd --version under $qemu"
		case $v in "kioskd "?*) ok "$name: $v (under $qemu)" ;; *) fail "$name: kioskd --version said '$v'" ;; esac
		v=$("$qemu" "$r/usr/bin/kioskctl" version 2>&1) || fail "$name: kioskctl version under $qemu"
		case $v in "kioskctl "?*) ok "$name: $v" ;; *) fail "$name: kioskctl version said '$v'" ;; esac
		run_till "$qemu" "$r" "$name"
	else
		echo "skip: $name: $qemu not installed, binaries not run"
	fi
}

# run_till starts the packaged kioskd with the packaged config on the sim
# board and waits for /healthz to answer 200.
run_till() {
	qemu=$1 r=$2 name=$3
	if ! command -v curl >/dev/null 2>&1; then
		echo "skip: $name: no curl, till not started"
		return
	fi
	port=$((20000 + $$ % 20000))
	"$qemu" "$r/usr/bin/kioskd" --config "$r/etc/kioskd/kioskd.toml" --board sim \
		--data "$tmp/data-$name" --http "127.0.0.1:$port" >"$tmp/till-$name.log" 2>&1 &
	pid=$!
	i=0
	while [ $i -lt 60 ]; do
		if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
			ok "$name: kioskd with the packaged config answers /healthz"
			kill "$pid"
			wait "$pid" 2>/dev/null
			pid=
			return
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 1
		i=$((i + 1))
	done
	fail "$name: kioskd with the packaged config never became healthy: $(tail -n 5 "$tmp/till-$name.log")"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	pid=
}

[ $# -gt 0 ] || set -- dist/kioskd_*.deb
for deb in "$@"; do
	if [ -f "$deb" ]; then
		check_deb "$deb"
	else
		fail "$deb: no such package (make deb first)"
	fi
done

if [ "$failures" -gt 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
echo "all packages pass"
