package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const examplePath = "../../deploy/kioskd.example.toml"

func TestExampleConfigLoads(t *testing.T) {
	c, err := loadConfig([]string{"--config", examplePath}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.KioskID != "karachi-burns-road-07" || len(c.Catalog) != 3 || len(c.Drops) != 1 || len(c.Plans) != 1 || c.Shop.Timezone != "Asia/Karachi" {
		t.Fatalf("%+v", c)
	}
}

// TestExampleDocumentsEveryKey: every key kioskd reads appears in the
// example file, so the file stays the reference.
func TestExampleDocumentsEveryKey(t *testing.T) {
	var raw map[string]any
	if _, err := toml.DecodeFile(examplePath, &raw); err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, typ reflect.Type, doc map[string]any)
	walk = func(prefix string, typ reflect.Type, doc map[string]any) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key := f.Tag.Get("toml")
			if key == "" || key == "-" {
				continue
			}
			v, ok := doc[key]
			if !ok {
				t.Errorf("key %s%s is not in %s", prefix, key, examplePath)
				continue
			}
			switch f.Type.Kind() {
			case reflect.Struct:
				if f.Type == reflect.TypeFor[time.Time]() {
					continue
				}
				walk(prefix+key+".", f.Type, v.(map[string]any))
			case reflect.Slice:
				if f.Type.Elem().Kind() == reflect.Struct {
					items := v.([]map[string]any)
					walk(prefix+key+"[].", f.Type.Elem(), items[0])
				}
			}
		}
	}
	walk("", reflect.TypeOf(Config{}), raw)
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kioskd.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagsWinOverTheFile(t *testing.T) {
	p := writeConfig(t, "kiosk_id = \"from-file\"\nhttp = \"127.0.0.1:9000\"\ndata = \"/srv/k\"\n")
	c, err := loadConfig([]string{"--config", p, "--kiosk-id", "from-flag", "--board", "sim"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.KioskID != "from-flag" || c.HTTP != "127.0.0.1:9000" || c.Data != "/srv/k" || c.Board != "sim" {
		t.Fatalf("%+v", c)
	}
	// Defaults where neither says anything.
	if c.Shop.Currency != "PKR" || c.Log.Level != "info" || c.MQTT != "" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		args       []string
		want       string
	}{
		{"typo", "kiosk_idd = \"x\"\n", nil, "unknown keys: kiosk_idd"},
		{"not toml", "kiosk_id = \n", nil, "config"},
		{"topic-unsafe id", "", []string{"--kiosk-id", "a/b#"}, "kiosk_id"},
		{"bad mqtt", "mqtt = \"localhost:1883\"\n", nil, "mqtt"},
		{"bad level", "[log]\nlevel = \"loud\"\n", nil, "log.level"},
		{"bad zone", "[shop]\ntimezone = \"Mars/Olympus\"\n", nil, "shop.timezone"},
		{"bad day start", "[shop]\nday_starts = \"4am\"\n", nil, "day_starts"},
		{"bad currency", "[shop]\ncurrency = \"rupees\"\n", nil, "currency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--config", writeConfig(t, tc.body)}, tc.args...)
			_, err := loadConfig(args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := loadConfig([]string{"--no-such-flag"}, io.Discard); !errors.Is(err, errUsage) {
		t.Fatalf("unknown flag: %v", err)
	}
	if _, err := loadConfig([]string{"extra"}, io.Discard); !errors.Is(err, errUsage) {
		t.Fatalf("stray argument: %v", err)
	}
}

func TestKioskIDFromHost(t *testing.T) {
	for host, want := range map[string]string{
		"kiosk-07.lan": "kiosk-07",
		"stall_3":      "stall_3",
		"ñ":            "kiosk",
		"a/b+c":        "abc",
	} {
		if got := kioskIDFromHost(host); got != want {
			t.Errorf("kioskIDFromHost(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestOfflineLimitNeedsAFleet(t *testing.T) {
	c := defaultConfig()
	if got := c.offlineLimit(); got != 0 {
		t.Fatalf("with no broker the limit is %d", got)
	}
	c.MQTT = "tls://fleet.example:8883"
	if got := c.offlineLimit(); got != c.Wallet.OfflineLimit || got == 0 {
		t.Fatalf("with a broker the limit is %d, want %d", got, c.Wallet.OfflineLimit)
	}
}
