package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchHarnessShort keeps make bench alive: it runs the harness in its
// short mode and checks that it produced every figure. It asserts nothing
// about timings.
func TestBenchHarnessShort(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	out := filepath.Join(t.TempDir(), "bench.md")
	cmd := exec.Command("go", "run", "./test/bench")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "BENCH_SHORT=1", "BENCH_OUT="+out)
	log, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench harness failed: %v\n%s", err, log)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"floor server", "gateway ingest (req/s", "p99", "end to end delivered", "paced", "AOF everysec", "Redis memory per queued event", "gateway RSS", "Targets"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("bench report lacks %q:\n%s", want, b)
		}
	}
}
