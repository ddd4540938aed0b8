# kioskd — see README.md. Every target works on a fresh machine with Go.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
DATA    ?= ./.kioskd
HTTP    ?= 127.0.0.1:8080
LDFLAGS := -X main.Version=$(VERSION)
# Packages with concurrent code, tested again under the race detector.
RACE_PKGS := ./drivers/... ./firmware/... ./cmd/... ./telemetry/... ./ota/... ./internal/salesdb/... ./internal/mosquitto/... ./internal/logind/...

# Packages whose tests also run on the boards' CPUs under qemu-user.
# drivers/transport is not among them: qemu-user does not pass through the
# termios2 (BOTHER) and LPGETSTATUS ioctls its pty tests make.
ARM_TEST_PKGS := boards drivers/barcode drivers/emu drivers/ina219 drivers/max17048 drivers/mains \
	drivers/pca9685 drivers/pn532 drivers/escpos drivers/scanner firmware/cards firmware/lighting \
	firmware/sim firmware/ledger firmware/till firmware/printing firmware/receipt

.PHONY: fuzz all build run test test-arm bench cross lint clean deb

all: lint test

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

# kioskd on the simulated board, state in ./.kioskd, till on 127.0.0.1:8080.
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/kioskd --board sim --data $(DATA) --http $(HTTP)

test:
	$(GO) test ./...
	$(GO) test -race -short $(RACE_PKGS)

# The fuzz targets for what arrives from the fleet: command and config
# payloads. FUZZTIME per target.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./telemetry -run '^$$' -fuzz '^FuzzParseCommand$$' -fuzztime $(FUZZTIME)
	$(GO) test ./telemetry -run '^$$' -fuzz '^FuzzParseDesiredConfig$$' -fuzztime $(FUZZTIME)

# The storage and sale-flow tests on 32-bit ARMv6 (Pi Zero, 32-bit Raspberry
# Pi OS) and arm64, under qemu-user. Without qemu-user-static it skips, unless
# KIOSK_REQUIRE_REAL=1 says it must run.
test-arm:
	@if ! command -v qemu-arm-static >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then \
		if [ "$$KIOSK_REQUIRE_REAL" = 1 ]; then echo "test-arm: qemu-user-static not found and KIOSK_REQUIRE_REAL=1"; exit 1; fi; \
		echo "test-arm: qemu-user-static not found, skipping (apt-get install qemu-user-static)"; exit 0; \
	fi; \
	set -e; for target in arm:6:qemu-arm-static arm64::qemu-aarch64-static; do \
		arch=$${target%%:*}; rest=$${target#*:}; goarm=$${rest%%:*}; qemu=$${rest#*:}; \
		for pkg in $(ARM_TEST_PKGS); do \
			bin=$(CURDIR)/bin/test-$$arch$$goarm/$$(echo $$pkg | tr / _).test; \
			GOOS=linux GOARCH=$$arch GOARM=$$goarm $(GO) test -c -o $$bin ./$$pkg; \
			echo "$$arch$$goarm $$pkg"; (cd $$pkg && $$qemu $$bin -test.short); \
		done; \
	done

# Benchmarks and the comparison harnesses; figures go in docs/BENCHMARKS.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./bench/storage -repeat 3
	$(GO) run ./bench/daemon
	$(GO) run ./bench/till
	$(GO) run ./bench/fleet
	$(GO) test -run '^$$' -bench MainsLostReaction -benchtime 300x ./cmd/kioskd
	$(GO) run ./bench/power
	$(GO) run ./bench/ota

# Stripped binaries for the boards: Pi 4/5/CM4/Zero 2 W (arm64), and
# 32-bit Raspberry Pi OS on ARMv6 (Zero, 1) and ARMv7 (2, 3).
cross:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/linux-arm64/ ./cmd/...
	GOOS=linux GOARCH=arm GOARM=7 CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/linux-armv7/ ./cmd/...
	GOOS=linux GOARCH=arm GOARM=6 CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/linux-armv6/ ./cmd/...

# Debian packages for Raspberry Pi OS, arm64 and armhf (ARMv6), in dist/;
# deploy/deb/test.sh checks them. Needs dpkg-deb and fakeroot.
deb:
	GO="$(GO)" VERSION="$(VERSION)" sh deploy/deb/build.sh

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin dist
