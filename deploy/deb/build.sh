#!/bin/sh
# build.sh: kioskd's Debian packages for Raspberry Pi OS, one for each
# architecture, into dist/ (make deb runs it; deploy/deb/test.sh checks the
# result). Plain dpkg-deb, no debhelper: the binaries are static Go
# (CGO_ENABLED=0), so there are no shared-library dependencies to compute.
#
#   deploy/deb/build.sh [ARCH...]     ARCH: arm64, armhf (default: both)
#
# arm64 is for 64-bit Raspberry Pi OS (Pi 4B, Pi 5, Zero 2 W, CM4). armhf is
# for 32-bit Raspberry Pi OS, whose userland is ARMv6, so it is built with
# GOARM=6 and runs on every Pi.
#
# Environment: GO (go), VERSION (stamped into the binaries; default
# git describe, as the Makefile has it), DEB_VERSION (the package version;
# default from git describe --tags, see deb_version), DEB_MAINTAINER, OUT
# (dist), SOURCE_DATE_EPOCH (default: the last commit's time).
set -eu
umask 022
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"

GO=${GO:-go}
OUT=${OUT:-dist}
VERSION=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
DEB_MAINTAINER=${DEB_MAINTAINER:-kioskd maintainers <kioskd@microretail.invalid>}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

die() {
	echo "build.sh: $*" >&2
	exit 1
}

# deb_version maps git describe to a Debian version, with revision -1:
#   v1.2.0                 -> 1.2.0-1
#   v1.2.0-3-g6747d14      -> 1.2.0+git3.6747d14-1
#   (no tag) 6747d14       -> 0.0~git20261123.6747d14-1 (commit date, UTC)
# and +dirty for uncommitted changes. '-' in a tag becomes '~' (1.0-rc1 sorts
# before 1.0).
deb_version() {
	if desc=$(git describe --tags --dirty --match '*[0-9]*' 2>/dev/null); then
		:
	elif desc=$(git describe --always --dirty 2>/dev/null); then
		date=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d)
		desc=0.0~git$date.$desc
	else
		echo 0.0~unknown-1
		return
	fi
	dirty=
	case $desc in *-dirty)
		dirty=+dirty
		desc=${desc%-dirty}
		;;
	esac
	desc=${desc#v}
	case $desc in
	*-[0-9]*-g[0-9a-f]*)
		sha=${desc##*-g}
		rest=${desc%-g*}
		n=${rest##*-}
		tag=${rest%-*}
		desc=$(echo "$tag" | tr -- '-_' '~.')+git$n.$sha
		;;
	*) desc=$(echo "$desc" | tr -- '-_' '~.') ;;
	esac
	echo "$desc$dirty-1"
}

DEB_VERSION=${DEB_VERSION:-$(deb_version)}
echo "$DEB_VERSION" | grep -Eq '^[0-9][A-Za-z0-9.+~]*-[0-9A-Za-z.+~]+$' ||
	die "DEB_VERSION $DEB_VERSION is not a Debian version"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# module_dir prints where the module cache holds PATH@VERSION (capitals are
# escaped as !lower there).
module_dir() {
	printf '%s/%s@%s\n' "$(${GO} env GOMODCACHE)" \
		"$(printf '%s' "$1" | sed 's/[A-Z]/!&/g' | tr '[:upper:]' '[:lower:]')" "$2"
}

# copyright writes the package's copyright file: kioskd's own notice, then
# the license of everything the static binaries contain (the Go runtime and
# each module), as their licenses ask of binary copies.
copyright() {
	cat <<-EOF
		kioskd: point-of-sale firmware for Raspberry Pi kiosks
		Source: https://github.com/microretail/kioskd

		Copyright: the kioskd authors.
		The kioskd source tree carries no license file; until it does, all
		rights are reserved.

		/usr/bin/kioskd and /usr/bin/kioskctl are statically linked Go programs.
		They contain the Go runtime and standard library and the Go modules
		listed below, each under its own license, reproduced here.
	EOF
	goversion=$(${GO} env GOVERSION)
	printf '\n==> Go %s (runtime and standard library) <==\n\n' "$goversion"
	cat "$(${GO} env GOROOT)/LICENSE"
	for bin in "$@"; do
		${GO} version -m "$bin"
	done | awk '$1 == "dep" { print $2, $3 }' | sort -u | while read -r mod ver; do
		printf '\n==> %s %s <==\n\n' "$mod" "$ver"
		dir=$(module_dir "$mod" "$ver")
		found=
		for f in "$dir"/*; do
			case $(basename "$f" | tr '[:upper:]' '[:lower:]') in
			license* | licence* | copying* | notice*) ;;
			*) continue ;;
			esac
			[ -f "$f" ] || continue
			found=1
			# Debian ships the Apache 2.0 text; point to it (NOTICE
			# files, which the license asks to pass on, stay whole).
			if grep -q 'Apache License' "$f" && grep -q 'Version 2.0, January 2004' "$f" &&
				grep -q 'END OF TERMS AND CONDITIONS' "$f"; then
				echo "Apache License 2.0: see /usr/share/common-licenses/Apache-2.0"
			else
				cat "$f"
			fi
		done
		[ -n "$found" ] || echo "(the module ships no license file)"
	done
}

build_one() {
	arch=$1
	case $arch in
	arm64) goarch=arm64 goarm= ;;
	armhf) goarch=arm goarm=6 ;;
	*) die "unknown architecture $arch (arm64 or armhf)" ;;
	esac
	root=$tmp/$arch
	doc=$root/usr/share/doc/kioskd
	mkdir -p "$root/DEBIAN" "$root/usr/bin" "$doc/examples"

	echo "build.sh: kioskd $VERSION for $arch (GOARCH=$goarch${goarm:+ GOARM=$goarm})"
	env CGO_ENABLED=0 GOOS=linux GOARCH=$goarch ${goarm:+GOARM=$goarm} \
		"$GO" build -trimpath -ldflags "-s -w -X main.Version=$VERSION" \
		-o "$root/usr/bin/" ./cmd/kioskd ./cmd/kioskctl

	install -D -m 0644 deploy/kioskd.service "$root/usr/lib/systemd/system/kioskd.service"
	install -D -m 0644 deploy/kiosk-ui.service "$root/usr/lib/systemd/system/kiosk-ui.service"
	install -D -m 0644 deploy/udev/60-kioskd.rules "$root/usr/lib/udev/rules.d/60-kioskd.rules"
	install -D -m 0644 deploy/polkit/50-kioskd.rules "$root/usr/share/polkit-1/rules.d/50-kioskd.rules"
	install -D -m 0755 deploy/kiosk-ui "$root/usr/libexec/kioskd/kiosk-ui"
	install -D -m 0644 deploy/deb/kiosk-ui.default "$root/etc/default/kiosk-ui"

	# The default config is the documented example, with the example's
	# kiosk id commented out: each kiosk then takes its host name, and no
	# two kiosks share an MQTT client id.
	mkdir -p "$root/etc/kioskd"
	grep -q '^kiosk_id = ' deploy/kioskd.example.toml || die "no kiosk_id line in deploy/kioskd.example.toml"
	{
		echo "# /etc/kioskd/kioskd.toml, installed by the kioskd package: kioskd.service"
		echo "# reads it. Your edits are kept on upgrades; apply them with"
		echo "# sudo systemctl restart kioskd. Command-line flags win over this file."
		sed -e '1,2{/^# kioskd configuration\. Copy to/d;/^# file when --config is not given/d;}' \
			-e 's/^kiosk_id = /# kiosk_id = /' deploy/kioskd.example.toml
	} >"$root/etc/kioskd/kioskd.toml"
	chmod 0644 "$root/etc/kioskd/kioskd.toml"

	install -m 0644 deploy/kioskd.example.toml "$doc/examples/kioskd.example.toml"
	install -D -m 0644 -t "$doc/examples/mosquitto" deploy/mosquitto/mosquitto.conf deploy/mosquitto/acl deploy/mosquitto/mkcerts.sh
	install -D -m 0644 deploy/deb/lintian-overrides "$root/usr/share/lintian/overrides/kioskd"
	copyright "$root/usr/bin/kioskd" "$root/usr/bin/kioskctl" >"$doc/copyright"
	chmod 0644 "$doc/copyright"
	{
		printf 'kioskd (%s) stable; urgency=medium\n\n' "$DEB_VERSION"
		printf '  * Built from git %s.\n\n' "$(git describe --tags --always --dirty 2>/dev/null || echo unknown)"
		printf ' -- %s  %s\n' "$DEB_MAINTAINER" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
	} | gzip -9n >"$doc/changelog.Debian.gz"
	chmod 0644 "$doc/changelog.Debian.gz"

	for s in postinst prerm postrm; do
		install -m 0755 "deploy/deb/$s" "$root/DEBIAN/$s"
	done
	printf '%s\n' /etc/default/kiosk-ui /etc/kioskd/kioskd.toml >"$root/DEBIAN/conffiles"
	size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
	sed -e "s/@VERSION@/$DEB_VERSION/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
		-e "s|@MAINTAINER@|$DEB_MAINTAINER|" deploy/deb/control.in >"$root/DEBIAN/control"
	(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
		xargs md5sum) >"$root/DEBIAN/md5sums"
	chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	deb=$OUT/kioskd_${DEB_VERSION}_$arch.deb
	rm -f "$OUT"/kioskd_*_"$arch".deb
	fakeroot dpkg-deb --build --root-owner-group -Zxz "$root" "$deb" >/dev/null
	echo "build.sh: $deb ($(du -k "$deb" | cut -f1) KiB)"
}

command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg)"
command -v fakeroot >/dev/null || die "fakeroot not found (apt-get install fakeroot)"
mkdir -p "$OUT"
[ $# -gt 0 ] || set -- arm64 armhf
for arch in "$@"; do
	build_one "$arch"
done
