package browser

import (
	"reflect"
	"testing"
)

func TestForeign(t *testing.T) {
	r := &Requests{urls: []string{
		"http://127.0.0.1:8080/", "http://127.0.0.1:8080/api/events", "http://localhost:8080/x",
		"http://[::1]:8080/", "data:image/png;base64,AAAA", "https://fonts.googleapis.com/css",
		"http://192.168.1.5/", "blob:http://127.0.0.1:8080/abc",
	}}
	want := []string{"https://fonts.googleapis.com/css", "http://192.168.1.5/"}
	if got := r.Foreign(); !reflect.DeepEqual(got, want) {
		t.Fatalf("foreign %v, want %v", got, want)
	}
}
