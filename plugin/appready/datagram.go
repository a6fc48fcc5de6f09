package appready

import "bytes"

// Ready reports whether one sd_notify datagram says READY=1: newline-separated assignments, any
// of them exactly READY=1 (sd_notify(3)); the others (STATUS=, MAINPID=, ...) are ignored. A
// datagram over MaxDatagram or holding a NUL byte is refused whole, as systemd does.
func Ready(datagram []byte) bool {
	if len(datagram) > MaxDatagram || bytes.IndexByte(datagram, 0) >= 0 {
		return false
	}
	for line := range bytes.SplitSeq(datagram, []byte{'\n'}) {
		if string(line) == "READY=1" {
			return true
		}
	}
	return false
}
