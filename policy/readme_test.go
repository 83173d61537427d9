package policy

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestReadmeYAMLParses: every YAML block of the README is valid YAML, so a
// reader who copies one gets a config the loader can read (one did not: an
// unquoted ${VAR} inside a flow mapping).
func TestReadmeYAMLParses(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := 0
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```yaml" {
			continue
		}
		start := i + 1
		var block []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			block = append(block, lines[i])
		}
		blocks++
		var v any
		if err := yaml.Unmarshal([]byte(strings.Join(block, "\n")), &v); err != nil {
			t.Errorf("README.md:%d: the YAML block does not parse: %v", start, err)
		}
	}
	if blocks < 3 {
		t.Fatalf("found %d YAML blocks in the README; the test is not reading it", blocks)
	}
}
