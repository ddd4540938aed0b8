package transport_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"sync"
	"time"

	"github.com/microretail/kioskd/drivers/transport"
)

// A network receipt printer on port 9100: send a job, then ask for the
// printer status with DLE EOT 1 and read the one-byte answer.
func Example() {
	// A stand-in printer on loopback that answers DLE EOT 1 with 0x16
	// (on line, no errors).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		var got []byte
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got = append(got, buf[:n]...)
			if l := len(got); l >= 3 && got[l-3] == 0x10 && got[l-2] == 0x04 && got[l-1] == 0x01 {
				c.Write([]byte{0x16})
			}
		}
	})
	defer wg.Wait()
	defer ln.Close()

	printer := transport.NewLink(transport.TCP(ln.Addr().String()), &transport.Opts{ReadTimeout: 2 * time.Second})
	defer printer.Close()
	if err := printer.Connect(context.Background()); err != nil {
		log.Fatal(err)
	}
	if _, err := printer.Write([]byte("\x1b@Chai 2x    PKR 200\n\x1dV\x00")); err != nil {
		log.Fatal(err)
	}
	if _, err := printer.Write([]byte{0x10, 0x04, 0x01}); err != nil {
		log.Fatal(err)
	}
	status := make([]byte, 1)
	if _, err := printer.Read(status); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("connected %v, status %#02x\n", printer.Connected(), status[0])
	// Output:
	// connected true, status 0x16
}

// A printer that is not there: the link fails fast with ErrDisconnected
// instead of hanging, and keeps failing fast until its backoff has passed.
func ExampleLink_Write() {
	printer := transport.NewLink(transport.USBLP("/dev/usb/lp-missing"), nil)
	defer printer.Close()
	_, err := printer.Write([]byte("\x1b@"))
	fmt.Println(err)
	// Output:
	// transport: disconnected: usblp /dev/usb/lp-missing: open /dev/usb/lp-missing: no such file or directory
}
