package testenv

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// closeWatcher records, through inotify, the order in which files in a
// directory were closed after writing. smtp-sink writes a dump file and
// closes it before it answers the final ".", so the close order is the
// arrival order and a closed file is complete. File timestamps cannot
// order messages: the kernel's coarse clock gives two messages a few
// milliseconds apart the same mtime.
type closeWatcher struct {
	f    *os.File
	done chan struct{}

	mu    sync.Mutex
	order map[string]int // file name → position
	err   error
}

func watchCloses(dir string) (*closeWatcher, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CLOSE_WRITE); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("inotify: %w", err)
	}
	// A non-blocking fd goes through Go's poller, so Close unblocks Read.
	w := &closeWatcher{f: os.NewFile(uintptr(fd), "inotify"), done: make(chan struct{}), order: map[string]int{}}
	go w.run()
	return w, nil
}

func (w *closeWatcher) run() {
	defer close(w.done)
	buf := make([]byte, 64*1024)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return // closed
		}
		w.mu.Lock()
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameStart := off + syscall.SizeofInotifyEvent
			name := string(bytes.TrimRight(buf[nameStart:nameStart+int(ev.Len)], "\x00"))
			off = nameStart + int(ev.Len)
			if ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
				w.err = fmt.Errorf("inotify queue overflow: message order lost")
			}
			if name != "" {
				if _, seen := w.order[name]; !seen {
					w.order[name] = len(w.order)
				}
			}
		}
		w.mu.Unlock()
	}
}

// position returns the close position of a file name, and whether it was
// closed at all.
func (w *closeWatcher) position(name string) (int, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pos, ok := w.order[name]
	return pos, ok, w.err
}

func (w *closeWatcher) close() {
	w.f.Close()
	<-w.done
}
