package receipt

import (
	"time"

	"github.com/microretail/kioskd/drivers/escpos"
)

// TestPage is what the fleet's print_test command prints: the shop's
// header, who asked and when, and a ruler the width of the paper, so a
// technician can see the head, the code page and the cutter work.
func (l Layout) TestPage(kioskID, version, request string, printed time.Time) ([]byte, error) {
	w, loc, err := l.start()
	if err != nil {
		return nil, err
	}
	w.Align(escpos.Left)
	w.rule()
	w.Bold(true)
	w.Line("PRINTER TEST")
	w.Bold(false)
	w.pair(printed.In(loc).Format("02 Jan 2006 15:04"), kioskID)
	w.pair("kioskd", version)
	w.pair("request", request)
	w.rule()
	ruler := make([]byte, w.cols)
	for i := range ruler {
		ruler[i] = byte('0' + (i+1)%10)
	}
	w.Line(string(ruler))
	w.Line("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz")
	w.rule()
	return w.finish()
}
