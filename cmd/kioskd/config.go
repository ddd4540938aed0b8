package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/microretail/kioskd/firmware/lighting"
	"github.com/microretail/kioskd/firmware/till"
)

// Config is kioskd's configuration: defaults, then the TOML file, then
// flags. Every key is documented in deploy/kioskd.example.toml.
type Config struct {
	KioskID string `toml:"kiosk_id"`
	Board   string `toml:"board"`
	Data    string `toml:"data"`
	HTTP    string `toml:"http"`
	MQTT    string `toml:"mqtt"`
	Dev     bool   `toml:"dev"`

	Log     LogConfig      `toml:"log"`
	Shop    ShopConfig     `toml:"shop"`
	Catalog []till.Product `toml:"catalog"`
	Lights  LightsConfig   `toml:"lights"`
}

// LightsConfig is the [lights] table.
type LightsConfig struct {
	// Scene is shown once the till is ready to sell; off before and at
	// shutdown.
	Scene string `toml:"scene"`
	// Fade is how long a change of scene takes, e.g. "800ms"; "0s" cuts.
	Fade string `toml:"fade"`
	// Scenes are the levels per channel, in percent of perceived
	// brightness. The file's scenes replace the defaults of the same name.
	Scenes map[string][]int `toml:"scenes"`
}

func (l LightsConfig) fade() time.Duration {
	d, _ := time.ParseDuration(l.Fade) // checked with the config
	return d
}

// LogConfig is the [log] table.
type LogConfig struct {
	Level  string `toml:"level"`  // trace, debug, info, warn, error
	Format string `toml:"format"` // auto, json, console
}

// ShopConfig is the [shop] table.
type ShopConfig struct {
	Name     string `toml:"name"`
	Currency string `toml:"currency"`
	Timezone string `toml:"timezone"`
	// DayStarts is when the business day rolls over, local time, "HH:MM".
	// A night market trading past midnight counts the small hours to the
	// evening before.
	DayStarts string `toml:"day_starts"`
}

// DefaultConfigPath is read when --config is not given and the file exists.
const DefaultConfigPath = "/etc/kioskd/kioskd.toml"

func defaultConfig() Config {
	return Config{
		Data:   "/var/lib/kioskd",
		HTTP:   "127.0.0.1:8080",
		Log:    LogConfig{Level: "info", Format: "auto"},
		Shop:   ShopConfig{Name: "kioskd stall", Currency: "PKR", Timezone: "Asia/Karachi", DayStarts: "04:00"},
		Lights: LightsConfig{Scene: lighting.Open, Fade: "800ms", Scenes: lighting.DefaultScenes()},
	}
}

var errUsage = errors.New("usage")

// loadConfig builds the configuration from args. Flags win over the file.
func loadConfig(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("kioskd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		path = fs.String("config", "", "TOML config `file` (default "+DefaultConfigPath+" if it exists)")
		flg  = Config{}
	)
	fs.StringVar(&flg.Board, "board", "", "board `name`: rpi4b, rpi5, rpizero2w, cm4 or sim (default: detected)")
	fs.StringVar(&flg.Data, "data", "", "state `dir` holding the ledger (default /var/lib/kioskd)")
	fs.StringVar(&flg.KioskID, "kiosk-id", "", "this kiosk's `id` (default: the host name)")
	fs.StringVar(&flg.HTTP, "http", "", "till listen `addr` (default 127.0.0.1:8080)")
	fs.StringVar(&flg.MQTT, "mqtt", "", "broker `url`; empty runs offline")
	fs.BoolVar(&flg.Dev, "dev", false, "start an embedded MQTT broker on 127.0.0.1:1883")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: kioskd [--config FILE] [--board NAME] [--data DIR] [--kiosk-id ID]\n"+
			"              [--http ADDR] [--mqtt URL] [--dev]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kioskd: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return Config{}, errUsage
	}
	if *version {
		fmt.Fprintln(stderr, "kioskd", Version)
		return Config{}, errVersion
	}

	c := defaultConfig()
	file := *path
	if file == "" {
		if _, err := os.Stat(DefaultConfigPath); err == nil {
			file = DefaultConfigPath
		}
	}
	if file != "" {
		md, err := toml.DecodeFile(file, &c)
		if err != nil {
			return Config{}, fmt.Errorf("config %s: %w", file, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return Config{}, fmt.Errorf("config %s: unknown keys: %s", file, strings.Join(keys, ", "))
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "board":
			c.Board = flg.Board
		case "data":
			c.Data = flg.Data
		case "kiosk-id":
			c.KioskID = flg.KioskID
		case "http":
			c.HTTP = flg.HTTP
		case "mqtt":
			c.MQTT = flg.MQTT
		case "dev":
			c.Dev = flg.Dev
		}
	})
	if c.KioskID == "" {
		host, err := os.Hostname()
		if err != nil {
			return Config{}, fmt.Errorf("no kiosk id given and no host name: %w", err)
		}
		c.KioskID = kioskIDFromHost(host)
	}
	return c, c.check()
}

var errVersion = errors.New("version printed")

// kioskIDPattern keeps ids safe as MQTT topic levels and client ids.
var kioskIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func kioskIDFromHost(host string) string {
	host, _, _ = strings.Cut(host, ".")
	var b strings.Builder
	for _, r := range host {
		if r < 0x80 && (r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "kiosk"
	}
	return b.String()
}

func (c *Config) check() error {
	var errs []error
	if !kioskIDPattern.MatchString(c.KioskID) {
		errs = append(errs, fmt.Errorf("kiosk_id %q: letters, digits, '-', '_' and '.' only, at most 64, as it names MQTT topics", c.KioskID))
	}
	if c.Data == "" {
		errs = append(errs, errors.New("data: empty"))
	}
	if c.HTTP == "" {
		errs = append(errs, errors.New("http: empty"))
	}
	if c.MQTT != "" && !(strings.HasPrefix(c.MQTT, "tcp://") || strings.HasPrefix(c.MQTT, "ssl://") ||
		strings.HasPrefix(c.MQTT, "tls://") || strings.HasPrefix(c.MQTT, "ws://") || strings.HasPrefix(c.MQTT, "wss://")) {
		errs = append(errs, fmt.Errorf("mqtt %q: want tcp://, ssl://, tls://, ws:// or wss://", c.MQTT))
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q", c.Log.Level))
	}
	switch c.Log.Format {
	case "auto", "json", "console":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: want auto, json or console", c.Log.Format))
	}
	if len(c.Shop.Currency) != 3 || strings.ToUpper(c.Shop.Currency) != c.Shop.Currency {
		errs = append(errs, fmt.Errorf("shop.currency %q: want an ISO 4217 code like PKR", c.Shop.Currency))
	}
	if _, err := time.LoadLocation(c.Shop.Timezone); err != nil {
		errs = append(errs, fmt.Errorf("shop.timezone: %v", err))
	}
	if _, err := c.dayStart(); err != nil {
		errs = append(errs, err)
	}
	if d, err := time.ParseDuration(c.Lights.Fade); err != nil || d < 0 || d > time.Minute {
		errs = append(errs, fmt.Errorf("lights.fade %q: want a duration from 0s to 1m", c.Lights.Fade))
	}
	if err := lighting.CheckScenes(c.Lights.Scenes); err != nil {
		errs = append(errs, err)
	} else if _, ok := c.Lights.Scenes[c.Lights.Scene]; !ok {
		errs = append(errs, fmt.Errorf("lights.scene %q is not a scene", c.Lights.Scene))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

func (c *Config) dayStart() (time.Duration, error) {
	t, err := time.Parse("15:04", c.Shop.DayStarts)
	if err != nil {
		return 0, fmt.Errorf("shop.day_starts %q: want HH:MM", c.Shop.DayStarts)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}
