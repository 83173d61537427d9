package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: the config loader never panics, and a file it rejects yields
// located errors (file and key) and no config.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(good))
	if b, err := os.ReadFile("../configs/switchboard.example.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("server:\n  listen: [\n"))
	f.Add([]byte("tenants:\n  a:\n    routes:\n      - to: [x]\n        match: {types: [1]}\n"))
	f.Add([]byte("delivery: {timeout: 5x, retry: {max_attempts: -1}}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(p, src, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadEnv(p, env(map[string]string{"TW_TOKEN": "x"}))
		if err == nil {
			if cfg == nil {
				t.Fatal("no error and no config")
			}
			return
		}
		if cfg != nil {
			t.Fatal("an error and a config")
		}
		errs, ok := err.(Errors)
		if !ok || len(errs) == 0 {
			t.Fatalf("err = %T %v, want located Errors", err, err)
		}
		for _, e := range errs {
			if e.File != p || e.Path == "" || !strings.Contains(e.Error(), p+":") {
				t.Fatalf("error not located: %q", e.Error())
			}
		}
	})
}
