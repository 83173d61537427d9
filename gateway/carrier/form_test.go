package carrier

import (
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseForm: parseForm gives exactly what url.ParseQuery gives — the
// same values and an error exactly when it errs — for any input.
func FuzzParseForm(f *testing.F) {
	for _, s := range []string{
		"", "a=1", "a=1&b=2&a=3", "a", "=x", "&&a=1&", "a=%zz&b=2", "a;b=1", "a=1;b=2&c=3",
		"To=%2B15555550199&Body=Is+2%2B2%3D4%3F&From=%2B15555550100", "a=1&a=1&a=", "%=1", "a+b=c+d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, wantErr := url.ParseQuery(s)
		got, err := parseForm(s)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("parseForm(%q) error %v, url.ParseQuery %v", s, err, wantErr)
		}
		if len(want) == 0 && len(got) == 0 {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parseForm(%q) = %v, url.ParseQuery = %v", s, got, want)
		}
		// Appending to one name's values must not touch another's.
		for k := range got {
			got[k] = append(got[k], "x")
		}
		for k, v := range got {
			if len(v) != len(want[k])+1 {
				t.Fatalf("after appending, %q = %v", k, v)
			}
		}
	})
}

func BenchmarkParseForm(b *testing.B) {
	raw, err := os.ReadFile("testdata/twilio/inbound.form")
	if err != nil {
		b.Fatal(err)
	}
	form := strings.TrimSpace(string(raw))
	b.Run("parseForm", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = parseForm(form)
		}
	})
	b.Run("url.ParseQuery", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = url.ParseQuery(form)
		}
	})
}
