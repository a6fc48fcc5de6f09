package daemon

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// InstallHook copies the hook binary to dest on the node, atomically: containers already holding a
// bind mount of the previous file keep it (a bind mount pins the inode), new ones get the new file.
func InstallHook(src, dest string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install hook: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("install hook: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".podorder-hook-*")
	if err != nil {
		return fmt.Errorf("install hook: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("install hook: copy to %s: %w", dest, err)
	}
	// Containers run the hook as their own uid.
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return fmt.Errorf("install hook: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("install hook: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install hook: %w", err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("install hook: %w", err)
	}
	return nil
}
