package nriconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// BackupSuffix names the copy of the original file Write keeps next to it: config.toml.podorder-backup.
const BackupSuffix = ".podorder-backup"

// File is containerd's config file as Read found it.
type File struct {
	Path    string
	Content []byte
	// Mode, UID and GID are kept by Write.
	Mode     fs.FileMode
	UID, GID int
	// Modified is when the file last changed.
	Modified time.Time
}

// Read reads containerd's config file at path. It refuses a symbolic link: replacing it would
// replace the link, not the file it points to (and its target, read from a container, may name the
// container's filesystem rather than the node's).
func Read(path string) (File, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return File{}, fmt.Errorf("read containerd's config: %w", err)
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return File{}, refuse("%s is a symbolic link: give --config the file it points to", path)
	}
	if !st.Mode().IsRegular() {
		return File{}, refuse("%s is not a regular file", path)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("read containerd's config: %w", err)
	}
	f := File{Path: path, Content: content, Mode: st.Mode().Perm(), Modified: st.ModTime(), UID: -1, GID: -1}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		f.UID, f.GID = int(sys.Uid), int(sys.Gid)
	}
	return f, nil
}

// Backup is the path of f's backup.
func (f File) Backup() string { return f.Path + BackupSuffix }

// Write replaces f's file with content atomically (a temporary file in the same directory, synced,
// renamed over it, the directory synced) with f's mode and owner. Before the first replacement it
// keeps the original as Backup; a backup that exists already is the older original and stays.
func (f File) Write(content []byte) error {
	if _, err := os.Lstat(f.Backup()); errors.Is(err, fs.ErrNotExist) {
		if err := f.replace(f.Backup(), f.Content); err != nil {
			return fmt.Errorf("keep a backup of containerd's config: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("check for a backup of containerd's config: %w", err)
	}
	if err := f.replace(f.Path, content); err != nil {
		return fmt.Errorf("write containerd's config: %w", err)
	}
	return nil
}

// replace writes content to path atomically with f's mode and owner.
func (f File) replace(path string, content []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".podorder-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	_, err = tmp.Write(content)
	if err == nil {
		err = tmp.Chmod(f.Mode)
	}
	if err == nil && f.UID >= 0 && (f.UID != os.Geteuid() || f.GID != os.Getegid()) {
		err = tmp.Chown(f.UID, f.GID)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
