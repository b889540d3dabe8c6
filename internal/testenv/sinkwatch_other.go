//go:build !linux

package testenv

// closeWatcher is Linux-only (inotify); elsewhere the Sink orders
// messages by modification time.
type closeWatcher struct{}

func watchCloses(string) (*closeWatcher, error) { return nil, nil }

func (w *closeWatcher) position(string) (int, bool, error) { return 0, false, nil }

func (w *closeWatcher) close() {}
