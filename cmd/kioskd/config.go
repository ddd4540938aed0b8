package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/microretail/kioskd/drivers/escpos"
	"github.com/microretail/kioskd/drivers/scanner"
	"github.com/microretail/kioskd/firmware/lighting"
	"github.com/microretail/kioskd/firmware/power"
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
	Drops   []till.Drop    `toml:"drops"`
	Plans   []till.Plan    `toml:"plans"`
	Wallet  WalletConfig   `toml:"wallet"`
	Lights  LightsConfig   `toml:"lights"`
	Printer PrinterConfig  `toml:"printer"`
	Scanner ScannerConfig  `toml:"scanner"`
	Fleet   FleetConfig    `toml:"fleet"`
	Power   PowerConfig    `toml:"power"`
	OTA     OTAConfig      `toml:"ota"`
}

// OTAConfig is the [ota] table: signed updates from the fleet.
type OTAConfig struct {
	// Keys is the directory of trusted signing keys (*.pub).
	Keys string `toml:"keys"`
	// Rate caps the download, bytes per second; 0 is no cap.
	Rate int64 `toml:"rate"`
	// TrialUptime: a release on trial commits once it has been up and
	// healthy this long; HealthTimeout: it is rolled back if it is not
	// healthy this long after its start; OfflineGrace: a trial with no
	// fleet link counts as healthy once this has passed (keep it plus
	// TrialUptime under HealthTimeout, or a kiosk offline during its trial
	// always rolls back).
	TrialUptime   string `toml:"trial_uptime"`
	HealthTimeout string `toml:"health_timeout"`
	OfflineGrace  string `toml:"offline_grace"`
}

func (c *Config) checkOTA() []error {
	var errs []error
	for key, v := range map[string]string{"trial_uptime": c.OTA.TrialUptime, "health_timeout": c.OTA.HealthTimeout, "offline_grace": c.OTA.OfflineGrace} {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("ota.%s %q: want a duration above 0", key, v))
		}
	}
	if c.OTA.Rate < 0 {
		errs = append(errs, fmt.Errorf("ota.rate %d: want 0 (no cap) or bytes per second", c.OTA.Rate))
	}
	if len(errs) == 0 && every(c.OTA.HealthTimeout) <= every(c.OTA.TrialUptime) {
		errs = append(errs, fmt.Errorf("ota.health_timeout %s must be longer than ota.trial_uptime %s", c.OTA.HealthTimeout, c.OTA.TrialUptime))
	}
	return errs
}

// PowerConfig is the [power] table: battery-mode automation.
type PowerConfig struct {
	Debounce             string  `toml:"debounce"`
	LowSoC               float64 `toml:"low_soc"`
	CriticalSoC          float64 `toml:"critical_soc"`
	CriticalCellVolts    float64 `toml:"critical_cell_volts"`
	CriticalRuntime      string  `toml:"critical_runtime"`
	RestoreHysteresisSoC float64 `toml:"restore_hysteresis_soc"`
	MaxOnBattery         string  `toml:"max_on_battery"` // "0s": no limit
	BatteryScene         string  `toml:"battery_scene"`
	LowScene             string  `toml:"low_scene"`
	CapacityAh           float64 `toml:"capacity_ah"`
	// Cells: Li-ion cells in series, for the charge from the shunt's
	// voltage when there is no fuel gauge.
	Cells int `toml:"cells"`
	// ClosingGrace: on a battery-critical shutdown, how long the sale on
	// the counter may still be paid for before the till closes.
	ClosingGrace string `toml:"closing_grace"`
	// Poweroff: "auto" powers the board off after the shutdown sequence
	// (systemctl poweroff; on the sim board kioskd exits instead), "exit"
	// only exits, for a UPS that cuts the power itself.
	Poweroff string `toml:"poweroff"`
	// Logind: "auto" talks to systemd-logind on real boards (the delay
	// lock, outside shutdowns, power-off and reboot); "off" never does;
	// "on" does on the sim board too, for tests on a private bus, where
	// it holds the lock and hears of shutdowns but still never powers
	// off or reboots the host.
	Logind string `toml:"logind"`
}

// thresholds are the policy's, checked with the config.
func (p PowerConfig) thresholds() power.Thresholds {
	return power.Thresholds{
		Debounce: every(p.Debounce), LowSoC: p.LowSoC, CriticalSoC: p.CriticalSoC,
		CriticalCellVolts: p.CriticalCellVolts, CriticalRuntime: every(p.CriticalRuntime),
		MaxOnBattery: every(p.MaxOnBattery), RestoreHysteresisSoC: p.RestoreHysteresisSoC,
	}
}

func (c *Config) checkPower() []error {
	p := c.Power
	var errs []error
	for key, v := range map[string]string{"debounce": p.Debounce, "critical_runtime": p.CriticalRuntime, "max_on_battery": p.MaxOnBattery, "closing_grace": p.ClosingGrace} {
		if d, err := time.ParseDuration(v); err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("power.%s %q: want a duration, 0s or more", key, v))
		}
	}
	if d, err := time.ParseDuration(p.ClosingGrace); err == nil && d > 2*time.Minute {
		errs = append(errs, fmt.Errorf("power.closing_grace %q: at most 2m, the battery is nearly empty", p.ClosingGrace))
	}
	if len(errs) == 0 {
		if err := p.thresholds().Check(); err != nil {
			errs = append(errs, err)
		}
	}
	for key, scene := range map[string]string{"battery_scene": p.BatteryScene, "low_scene": p.LowScene} {
		if _, ok := c.Lights.Scenes[scene]; !ok {
			errs = append(errs, fmt.Errorf("power.%s %q is not a scene of [lights.scenes]", key, scene))
		}
	}
	if p.CapacityAh < 0 || p.CapacityAh > 1000 {
		errs = append(errs, fmt.Errorf("power.capacity_ah %v: want 0 (unknown) to 1000", p.CapacityAh))
	}
	if p.Cells < 1 || p.Cells > 16 {
		errs = append(errs, fmt.Errorf("power.cells %d: want 1 to 16 cells in series", p.Cells))
	}
	if p.Logind != "auto" && p.Logind != "on" && p.Logind != "off" {
		errs = append(errs, fmt.Errorf("power.logind %q: want auto, on or off", p.Logind))
	}
	if p.Poweroff != "auto" && p.Poweroff != "exit" {
		errs = append(errs, fmt.Errorf("power.poweroff %q: want auto or exit", p.Poweroff))
	}
	return errs
}

// FleetConfig is the [fleet] table: how the MQTT session (mqtt, above)
// authenticates, and how often it reports.
type FleetConfig struct {
	CA       string `toml:"ca"`
	Cert     string `toml:"cert"`
	Key      string `toml:"key"`
	Username string `toml:"username"`
	Password string `toml:"password"`
	// Report cadences: power on mains, power on battery, health.
	PowerEvery        string `toml:"power_every"`
	BatteryPowerEvery string `toml:"battery_power_every"`
	HealthEvery       string `toml:"health_every"`
	// Sales batches: at most this many entries and bytes each.
	BatchMax   int `toml:"batch_max"`
	BatchBytes int `toml:"batch_bytes"`
	// AckTimeout: sales sent and not acknowledged by the fleet's ingest
	// within this long are sent again.
	AckTimeout string `toml:"ack_timeout"`
}

// every parses a cadence checked with the config.
func every(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}

// PrinterConfig is the [printer] table. Empty connection settings come
// from the board profile.
type PrinterConfig struct {
	Enabled bool `toml:"enabled"`
	// Connection is "serial", "usb" or "tcp"; empty picks the board's USB
	// printer device when it exists, else its UART.
	Connection string `toml:"connection"`
	Device     string `toml:"device"`  // serial or USB device path
	Baud       int    `toml:"baud"`    // serial only
	Flow       string `toml:"flow"`    // serial only: none, rtscts or xonxoff
	Address    string `toml:"address"` // tcp only: host or host:port (9100)
	Paper      string `toml:"paper"`   // "58mm" or "80mm"
	CodePage   string `toml:"code_page"`
	// SpeedMMs is the printer's print speed in mm/s, for pacing a serial
	// link with no flow control.
	SpeedMMs int `toml:"speed_mm_s"`
	// Drawer: a cash drawer is wired to the printer's drawer-kick port and
	// opens whenever cash changes hands.
	Drawer bool `toml:"drawer"`
}

// ScannerConfig is the [scanner] table.
type ScannerConfig struct {
	Enabled bool `toml:"enabled"`
	// Kind is "hid" (a USB keyboard-wedge scanner on evdev) or "gm65" (a
	// UART scanner module).
	Kind string `toml:"kind"`
	// Device is the evdev path glob (hid) or the UART (gm65); empty takes
	// the board profile's.
	Device string `toml:"device"`
	Name   string `toml:"name"` // hid: match the device name containing this
	ID     string `toml:"id"`   // hid: match vendor:product, hex, e.g. "0c2e:0b61"
	Layout string `toml:"layout"`
	// Repeat is how long the same code scanned again counts once.
	Repeat string `toml:"repeat"`
}

// WalletConfig is the [wallet] table.
type WalletConfig struct {
	// OfflineLimit bounds what one card may spend, in minor units, in
	// sales the fleet has not acknowledged yet; 0 is no limit.
	OfflineLimit int64 `toml:"offline_limit"`
}

// offlineLimit is the wallet's offline limit as the till applies it: only
// with a fleet. A kiosk with no broker is the only place its cards are
// spent, so its balances are the whole truth, and a limit on spending the
// fleet has not acknowledged would stop every card for good.
func (c *Config) offlineLimit() int64 {
	if c.MQTT == "" {
		return 0
	}
	return c.Wallet.OfflineLimit
}

// LightsConfig is the [lights] table.
type LightsConfig struct {
	// Scene is shown while the till is open for the day; off before it is
	// ready and at shutdown.
	Scene string `toml:"scene"`
	// ClosedScene is shown once the operator closes the day.
	ClosedScene string `toml:"closed_scene"`
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
	Name    string `toml:"name"`
	Address string `toml:"address"` // printed under the name on receipts
	Phone   string `toml:"phone"`
	// Footer lines close every receipt; Offer, when set, is a subscription
	// offer boxed under the footer of sale receipts.
	Footer   []string `toml:"footer"`
	Offer    string   `toml:"offer"`
	Currency string   `toml:"currency"`
	Timezone string   `toml:"timezone"`
	// DayStarts is when the business day rolls over, local time, "HH:MM".
	// A night market trading past midnight counts the small hours to the
	// evening before.
	DayStarts string `toml:"day_starts"`
}

// DefaultConfigPath is read when --config is not given and the file exists.
const DefaultConfigPath = "/etc/kioskd/kioskd.toml"

func defaultConfig() Config {
	return Config{
		Data:    "/var/lib/kioskd",
		HTTP:    "127.0.0.1:8080",
		Log:     LogConfig{Level: "info", Format: "auto"},
		Shop:    ShopConfig{Name: "kioskd stall", Currency: "PKR", Timezone: "Asia/Karachi", DayStarts: "04:00"},
		Wallet:  WalletConfig{OfflineLimit: 500000},
		Lights:  LightsConfig{Scene: lighting.Open, ClosedScene: lighting.Night, Fade: "800ms", Scenes: lighting.DefaultScenes()},
		Printer: PrinterConfig{Enabled: true, Paper: "58mm", CodePage: "PC437", SpeedMMs: 50, Drawer: true},
		Scanner: ScannerConfig{Enabled: true, Kind: "hid", Layout: "us", Repeat: "1s"},
		Power: PowerConfig{Debounce: "5s", LowSoC: 30, CriticalSoC: 15, CriticalCellVolts: 3.5, CriticalRuntime: "5m",
			RestoreHysteresisSoC: 5, MaxOnBattery: "0s", BatteryScene: lighting.Battery, LowScene: lighting.Night,
			ClosingGrace: "20s", Poweroff: "auto", Logind: "auto", Cells: 1},
		OTA: OTAConfig{Keys: "/etc/kioskd/ota-keys", TrialUptime: "2m", HealthTimeout: "10m", OfflineGrace: "5m"},
		Fleet: FleetConfig{PowerEvery: "60s", BatteryPowerEvery: "10s", HealthEvery: "5m",
			BatchMax: 500, BatchBytes: 128 << 10, AckTimeout: "30s"},
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
	fs.BoolVar(&flg.Dev, "dev", false, "start an embedded MQTT broker on 127.0.0.1:1883 (and use it, unless --mqtt names another)")
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
	if c.Dev && c.MQTT == "" {
		// The dev broker is there for this kiosk and a console beside it.
		c.MQTT = "tcp://" + devBrokerAddr
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
	errs = append(errs, c.Fleet.check()...)
	errs = append(errs, c.checkPower()...)
	errs = append(errs, c.checkOTA()...)
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
	} else {
		for key, scene := range map[string]string{"scene": c.Lights.Scene, "closed_scene": c.Lights.ClosedScene} {
			if _, ok := c.Lights.Scenes[scene]; !ok {
				errs = append(errs, fmt.Errorf("lights.%s %q is not a scene", key, scene))
			}
		}
	}
	if c.Wallet.OfflineLimit < 0 {
		errs = append(errs, fmt.Errorf("wallet.offline_limit %d: want 0 (no limit) or more", c.Wallet.OfflineLimit))
	}
	if len(c.Catalog) == 0 && len(c.Drops) > 0 {
		errs = append(errs, errors.New("drops: a drop names a product of [[catalog]], which is empty"))
	} else if _, err := till.BuildCatalog(till.Menu{Products: c.Catalog, Drops: c.Drops, Plans: c.Plans}); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Printer.check()...)
	errs = append(errs, c.Scanner.check()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

func (p *PrinterConfig) check() []error {
	var errs []error
	switch p.Connection {
	case "", "serial", "usb", "tcp":
	default:
		errs = append(errs, fmt.Errorf("printer.connection %q: want serial, usb or tcp", p.Connection))
	}
	if p.Connection == "tcp" && p.Address == "" {
		errs = append(errs, errors.New("printer.address: a tcp printer needs an address"))
	}
	switch p.Flow {
	case "", "none", "rtscts", "xonxoff":
	default:
		errs = append(errs, fmt.Errorf("printer.flow %q: want none, rtscts or xonxoff", p.Flow))
	}
	if p.Baud < 0 || p.Baud > 4_000_000 {
		errs = append(errs, fmt.Errorf("printer.baud %d", p.Baud))
	}
	if p.SpeedMMs < 10 || p.SpeedMMs > 500 {
		errs = append(errs, fmt.Errorf("printer.speed_mm_s %d: want 10 to 500", p.SpeedMMs))
	}
	if _, err := p.paper(); err != nil {
		errs = append(errs, err)
	}
	if _, err := escpos.CodePageByName(p.CodePage); err != nil {
		errs = append(errs, fmt.Errorf("printer.code_page: %w", err))
	}
	return errs
}

func (p *PrinterConfig) paper() (escpos.Paper, error) {
	switch p.Paper {
	case "58mm":
		return escpos.Paper58, nil
	case "80mm":
		return escpos.Paper80, nil
	}
	return escpos.Paper{}, fmt.Errorf("printer.paper %q: want 58mm or 80mm", p.Paper)
}

func (s *ScannerConfig) check() []error {
	var errs []error
	switch s.Kind {
	case "hid":
	case "gm65":
		if s.Enabled && s.Device == "" {
			errs = append(errs, errors.New("scanner.device: a gm65 scanner needs the UART it is on"))
		}
	default:
		errs = append(errs, fmt.Errorf("scanner.kind %q: want hid or gm65", s.Kind))
	}
	if !slices.Contains(scanner.Layouts(), s.Layout) {
		errs = append(errs, fmt.Errorf("scanner.layout %q: want one of %s", s.Layout, strings.Join(scanner.Layouts(), ", ")))
	}
	if d, err := time.ParseDuration(s.Repeat); err != nil || d < 0 || d > time.Minute {
		errs = append(errs, fmt.Errorf("scanner.repeat %q: want a duration from 0s to 1m", s.Repeat))
	}
	if s.ID != "" && !regexp.MustCompile(`^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$`).MatchString(s.ID) {
		errs = append(errs, fmt.Errorf("scanner.id %q: want vendor:product in hex, like 0c2e:0b61", s.ID))
	}
	return errs
}

// repeat is the scanner's dedup window; "0s" turns it off, which the
// driver options spell as a negative window (their 0 is the default).
func (s *ScannerConfig) repeat() time.Duration {
	d, _ := time.ParseDuration(s.Repeat) // checked with the config
	if d == 0 {
		return -1
	}
	return d
}

func (c *Config) dayStart() (time.Duration, error) {
	t, err := time.Parse("15:04", c.Shop.DayStarts)
	if err != nil {
		return 0, fmt.Errorf("shop.day_starts %q: want HH:MM", c.Shop.DayStarts)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

func (f FleetConfig) check() []error {
	var errs []error
	for _, c := range []struct {
		key, v   string
		min, max time.Duration
	}{
		{"power_every", f.PowerEvery, time.Second, time.Hour},
		{"battery_power_every", f.BatteryPowerEvery, time.Second, time.Hour},
		{"health_every", f.HealthEvery, 5 * time.Second, 24 * time.Hour},
		{"ack_timeout", f.AckTimeout, time.Second, time.Hour},
	} {
		if d, err := time.ParseDuration(c.v); err != nil || d < c.min || d > c.max {
			errs = append(errs, fmt.Errorf("fleet.%s %q: want a duration from %s to %s", c.key, c.v, c.min, c.max))
		}
	}
	if f.BatchMax < 1 || f.BatchMax > 5000 {
		errs = append(errs, fmt.Errorf("fleet.batch_max %d: want 1 to 5000", f.BatchMax))
	}
	if f.BatchBytes < 4<<10 || f.BatchBytes > 256<<10 {
		errs = append(errs, fmt.Errorf("fleet.batch_bytes %d: want 4096 to 262144", f.BatchBytes))
	}
	if (f.Cert == "") != (f.Key == "") {
		errs = append(errs, errors.New("fleet: cert and key go together"))
	}
	return errs
}
