//go:build linux

// Package kernlisten reports TCP sockets as they start listening, node-wide, from the kernel's own
// event: the raw tracepoint sock:inet_sock_set_state, which fires in listen(2) with the new state
// TCP_LISTEN. A small eBPF program, written with cilium/ebpf's asm package (no compiler at build
// or run time), keeps only that state in the kernel and writes the socket's port, family and
// network namespace into a bounded ring buffer; Watch reads it and hands the events to the probes.
//
// No event is lost unseen: when the ring buffer is full the program counts the events it could not
// write, and Watch, which reads that count after every batch, reports the loss, so that every probe
// waiting on a closed port is attempted again.
//
// It needs no tracefs: a raw tracepoint is attached by name through bpf(2), and the offsets of
// the socket's fields come from the kernel's BTF (/sys/kernel/btf/vmlinux). Open fails, saying
// why, when any of that is missing; the probes then poll as they do without it.
package kernlisten

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/podorder/podorder/plugin/probe"
)

// Name is the source's name in logs and metrics.
const Name = "ebpf"

const (
	// tracepoint is the raw tracepoint's name; its arguments are (struct sock *sk, int oldstate,
	// int newstate).
	tracepoint = "inet_sock_set_state"
	// tcpListen is the kernel's TCP_LISTEN.
	tcpListen = 10
	// ringBytes bounds the events waiting to be read: 16 bytes each (an 8-byte header and the
	// event), so 4,096 of them. When it is full the program drops new events and counts them.
	ringBytes = 64 << 10
	// maxBatch is how many events are handed to the probes at once, under one lock.
	maxBatch = 64
	// eventSize is the event's size: netns inode (u32), port (u16), family (u16).
	eventSize = 8
)

// Source is the eBPF program attached to the tracepoint and the ring buffer it writes to.
type Source struct {
	ring *ebpf.Map
	// lost is a one-element array: how many events the program could not write to a full ring.
	lost   *ebpf.Map
	prog   *ebpf.Program
	link   link.Link
	reader *ringbuf.Reader
}

// offsets are where the program reads a socket's fields, found in the kernel's BTF.
type offsets struct {
	num, family uint32 // in struct sock: the local port (host order) and the address family
	// net is the offset of the socket's struct net pointer and inum that of the namespace's inode
	// number in struct net; hasNetns is false when the kernel has none to tell (no CONFIG_NET_NS).
	net, inum uint32
	hasNetns  bool
}

// Open loads the program and attaches it. It fails when the kernel has no BTF, no raw tracepoint
// by that name, no ring buffers (before 5.8) or when the daemon may not load programs (it needs
// CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN).
func Open() (_ *Source, err error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF): %w", err)
	}
	off, err := findOffsets(spec)
	if err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge programs and maps to RLIMIT_MEMLOCK; later ones to the cgroup,
	// and this is then a no-op. Should it fail, the load below says so.
	memlockErr := rlimit.RemoveMemlock()
	s := &Source{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.ring, err = ebpf.NewMap(&ebpf.MapSpec{Name: "podorder_listen", Type: ebpf.RingBuf, MaxEntries: ringBytes}); err != nil {
		return nil, withMemlock(fmt.Errorf("create the ring buffer (kernel 5.8 or later): %w", err), memlockErr)
	}
	if s.lost, err = ebpf.NewMap(&ebpf.MapSpec{Name: "podorder_lost", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1}); err != nil {
		return nil, withMemlock(fmt.Errorf("create the lost-event counter: %w", err), memlockErr)
	}
	if s.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "podorder_listen",
		Type:         ebpf.RawTracepoint,
		Instructions: program(off, s.ring.FD(), s.lost.FD()),
		// bpf_probe_read_kernel is offered only to programs that declare a GPL-compatible license.
		License: "Dual BSD/GPL",
	}); err != nil {
		return nil, withMemlock(fmt.Errorf("load the eBPF program: %w", err), memlockErr)
	}
	if s.link, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tracepoint, Program: s.prog}); err != nil {
		return nil, fmt.Errorf("attach to the raw tracepoint %s: %w", tracepoint, err)
	}
	if s.reader, err = ringbuf.NewReader(s.ring); err != nil {
		return nil, fmt.Errorf("read the ring buffer: %w", err)
	}
	return s, nil
}

func withMemlock(err, memlockErr error) error {
	if memlockErr != nil {
		return fmt.Errorf("%w (raising RLIMIT_MEMLOCK failed too: %v)", err, memlockErr)
	}
	return err
}

// Close detaches the program and frees the ring buffer.
func (s *Source) Close() error {
	var errs []error
	if s.reader != nil {
		errs = append(errs, s.reader.Close())
	}
	if s.link != nil {
		errs = append(errs, s.link.Close())
	}
	if s.prog != nil {
		errs = append(errs, s.prog.Close())
	}
	if s.ring != nil {
		errs = append(errs, s.ring.Close())
	}
	if s.lost != nil {
		errs = append(errs, s.lost.Close())
	}
	return errors.Join(errs...)
}

// Watch hands the events to listened, in batches of up to 64 with duplicates dropped, from the
// calling goroutine, until ctx ends (it then returns nil) or reading fails. A batch read after the
// program dropped events to a full ring ends with a Lost event. It closes the source when it
// returns.
func (s *Source) Watch(ctx context.Context, listened func([]probe.Listen)) error {
	defer s.Close()
	// A flush interrupts a blocked read (it returns what the ring holds, then ErrFlushed). Closing
	// the reader would too, but not safely: AvailableBytes reads the ring a close frees.
	stop := context.AfterFunc(ctx, func() { _ = s.reader.Flush() })
	defer stop()
	var rec ringbuf.Record
	batch := make([]probe.Listen, 0, maxBatch+1)
	var seenLost uint64
	for ctx.Err() == nil {
		batch = batch[:0]
		for len(batch) == 0 || len(batch) < maxBatch && s.reader.AvailableBytes() > 0 {
			if err := s.reader.ReadInto(&rec); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, os.ErrClosed) || errors.Is(err, ringbuf.ErrClosed) {
					return errors.New("the ring buffer was closed")
				}
				return fmt.Errorf("read the ring buffer: %w", err)
			}
			if ev, ok := decode(rec.RawSample); ok && !contains(batch, ev) {
				batch = append(batch, ev)
			}
		}
		// The count is read after the batch: a loss is reported once the ring has room again, with
		// the events that were written before it.
		lost, err := s.lostCount()
		if err != nil {
			return fmt.Errorf("read the lost-event counter: %w", err)
		}
		if lost != seenLost {
			seenLost = lost
			batch = append(batch, probe.Listen{Lost: true})
		}
		listened(batch)
	}
	return nil
}

// lostCount is how many events the program has dropped to a full ring since it was loaded.
func (s *Source) lostCount() (uint64, error) {
	var n uint64
	err := s.lost.Lookup(uint32(0), &n)
	return n, err
}

func contains(batch []probe.Listen, ev probe.Listen) bool {
	for _, b := range batch {
		if b == ev {
			return true
		}
	}
	return false
}

// decode reads an event as the program wrote it, in the host's byte order.
func decode(b []byte) (probe.Listen, bool) {
	if len(b) < eventSize {
		return probe.Listen{}, false
	}
	return probe.Listen{
		Netns:  uint64(binary.NativeEndian.Uint32(b[0:4])),
		Port:   binary.NativeEndian.Uint16(b[4:6]),
		Family: binary.NativeEndian.Uint16(b[6:8]),
	}, true
}

// program is the eBPF program: on a socket entering TCP_LISTEN, write {netns inode u32, port u16,
// family u16} to the ring buffer, or count it in lost when the ring is full; on any other state
// change, nothing. The socket's fields are read with bpf_probe_read_kernel at offsets from BTF.
func program(off offsets, ring, lost int) asm.Instructions {
	const (
		ev    = -8  // the event, on the stack
		netp  = -16 // the struct net pointer, on the stack
		key   = -20 // the lost counter's key, on the stack
		sk    = asm.R6
		state = asm.R7
	)
	read := func(dst int16, size int32, base asm.Register, offset uint32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.RFP),
			asm.Add.Imm(asm.R1, int32(dst)),
			asm.Mov.Imm(asm.R2, size),
			asm.Mov.Reg(asm.R3, base),
			asm.Add.Imm(asm.R3, int32(offset)),
			asm.FnProbeReadKernel.Call(),
		}
	}
	insns := asm.Instructions{
		// R1 is the raw tracepoint's arguments, u64 each: sk, oldstate, newstate.
		asm.LoadMem(state, asm.R1, 16, asm.DWord),
		asm.JNE.Imm32(state, tcpListen, "exit"),
		asm.LoadMem(sk, asm.R1, 0, asm.DWord),
		asm.Mov.Imm(asm.R0, 0),
		asm.StoreMem(asm.RFP, ev, asm.R0, asm.DWord),
	}
	insns = append(insns, read(ev+4, 2, sk, off.num)...)
	insns = append(insns, read(ev+6, 2, sk, off.family)...)
	if off.hasNetns {
		insns = append(insns, asm.Mov.Imm(asm.R0, 0), asm.StoreMem(asm.RFP, netp, asm.R0, asm.DWord))
		insns = append(insns, read(netp, 8, sk, off.net)...)
		insns = append(insns,
			asm.LoadMem(asm.R8, asm.RFP, netp, asm.DWord),
			asm.JEq.Imm(asm.R8, 0, "emit"),
		)
		insns = append(insns, read(ev, 4, asm.R8, off.inum)...)
	}
	insns = append(insns,
		asm.LoadMapPtr(asm.R1, ring).WithSymbol("emit"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, ev),
		asm.Mov.Imm(asm.R3, eventSize),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		// The ring is full: count the event, atomically (events come from every CPU).
		asm.StoreImm(asm.RFP, key, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, lost),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, key),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	)
	return insns
}

// findOffsets reads the offsets of the socket's fields from the kernel's BTF.
func findOffsets(spec *btf.Spec) (offsets, error) {
	var sock, net *btf.Struct
	if err := spec.TypeByName("sock", &sock); err != nil {
		return offsets{}, fmt.Errorf("struct sock in the kernel's BTF: %w", err)
	}
	var off offsets
	var err error
	if off.num, err = memberOffset(sock, 2, "__sk_common", "skc_num"); err != nil {
		return offsets{}, err
	}
	if off.family, err = memberOffset(sock, 2, "__sk_common", "skc_family"); err != nil {
		return offsets{}, err
	}
	// Without the namespace the event still says which port listens: it then wakes the probes of
	// that port in every namespace.
	if spec.TypeByName("net", &net) == nil {
		netOff, err1 := memberOffset(sock, 8, "__sk_common", "skc_net", "net")
		inum, err2 := memberOffset(net, 4, "ns", "inum")
		if err1 == nil && err2 == nil {
			off.net, off.inum, off.hasNetns = netOff, inum, true
		}
	}
	return off, nil
}

// memberOffset is the byte offset of the member at path within t, descending into anonymous
// structs and unions, and checks that the member is size bytes wide.
func memberOffset(t btf.Type, size uint32, path ...string) (uint32, error) {
	var total uint32
	for i, name := range path {
		off, mt, ok := findMember(t, name)
		if !ok {
			return 0, fmt.Errorf("%s: no member %s in the kernel's BTF", t.TypeName(), name)
		}
		total += off
		t = mt
		if i == len(path)-1 {
			if got, err := btf.Sizeof(mt); err != nil || uint32(got) != size {
				return 0, fmt.Errorf("%s in the kernel's BTF is %d bytes, not %d (%v)", name, got, size, err)
			}
		}
	}
	return total, nil
}

// findMember finds name among t's members, or those of its anonymous members.
func findMember(t btf.Type, name string) (uint32, btf.Type, bool) {
	var members []btf.Member
	switch c := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	default:
		return 0, nil, false
	}
	for _, m := range members {
		if m.BitfieldSize != 0 || m.Offset%8 != 0 {
			continue
		}
		if m.Name == name {
			return uint32(m.Offset / 8), m.Type, true
		}
		if m.Name == "" {
			if off, mt, ok := findMember(m.Type, name); ok {
				return uint32(m.Offset/8) + off, mt, true
			}
		}
	}
	return 0, nil, false
}
