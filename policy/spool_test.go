package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestSpool(t *testing.T) {
	if got := mustLoad(t, "{}\n", nil).Spool; got != nil {
		t.Errorf("spool without the key = %+v, want nil (no spool)", got)
	}
	cfg := mustLoad(t, "spool: {dir: journal}\n", nil)
	if cfg.Spool == nil {
		t.Fatal("spool = nil, want one")
	}
	if want := filepath.Join(filepath.Dir(cfg.File), "journal"); cfg.Spool.Dir != want {
		t.Errorf("spool.dir = %q, want %q (relative to the config file)", cfg.Spool.Dir, want)
	}
	if cfg.Spool.MaxBytes != DefaultSpoolMaxBytes {
		t.Errorf("spool.max_bytes = %d, want the default %d", cfg.Spool.MaxBytes, DefaultSpoolMaxBytes)
	}
	if got := mustLoad(t, "spool: {dir: /var/spool/sb, max_bytes: 1024}\n", nil).Spool; got.Dir != "/var/spool/sb" || got.MaxBytes != 1024 {
		t.Errorf("spool = %+v, want /var/spool/sb and 1024", got)
	}

	for _, c := range []struct{ body, want string }{
		{"spool: {max_bytes: 10}\n", ":1: spool.dir: is required"},
		{"spool:\n  dir: x\n  max_bytes: 0\n", ":3: spool.max_bytes: must be positive"},
		{"spool:\n  dir: x\n  max_bytes: -5\n", ":3: spool.max_bytes: must be positive"},
		{"spool:\n  dir: x\n  size: 5\n", ":3: spool.size: unknown key"},
	} {
		p, errs := loadErrors(t, c.body, nil)
		if want := p + c.want; !strings.Contains(errs.Error(), want) {
			t.Errorf("%q: errors = %v, want %q", c.body, errs, want)
		}
	}
	dir := t.TempDir()
	file := writeFile(t, dir, "file", "x")
	p, errs := loadErrors(t, "spool: {dir: "+file+"}\n", nil)
	if want := p + ":1: spool.dir: " + file + " is not a directory"; !strings.Contains(errs.Error(), want) {
		t.Errorf("errors = %v, want %q", errs, want)
	}
}
