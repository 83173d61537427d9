package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
)

func TestMaskNumbers(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"+15555550100", "+1555***0100"},
		{"from +15555550100 to +447700900123.", "from +1555***0100 to +4477***0123."},
		{"msisdn=447700900123", "msisdn=4477***0123"},
		{"+49301234567", "+4930***4567"},
		{"+12345678", "+1***5678"},
		{"tel:+15555550100", "tel:+1555***0100"},
		{"short code 12345 and 5555", "short code 12345 and 5555"},
		{"+1234567", "+1234567"},
		{"evt_01JD3R6Q9W8ZK4T5N2M7XB0C1D", "evt_01JD3R6Q9W8ZK4T5N2M7XB0C1D"},
		{"entry 1732700000000-0", "entry 1732700000000-0"},
		{"SM0123456789abcdef0123456789abcdef", "SM0123456789abcdef0123456789abcdef"},
		{"took 1234567890123456789 ns", "took 1234567890123456789 ns"},
		// An AWS account id inside an ARN is kept (a logged SNS SubscribeURL
		// must stay usable); the same digits elsewhere are not.
		{"topic arn:aws:sns:us-east-1:111122223333:sms-events", "topic arn:aws:sns:us-east-1:111122223333:sms-events"},
		{"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws-cn:sns:cn-north-1:111122223333:t&Token=ab",
			"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws-cn:sns:cn-north-1:111122223333:t&Token=ab"},
		{"tel:447700900123:x", "tel:4477***0123:x"},
		{"arn:aws:sns:us-east-1:447700900123", "arn:aws:sns:us-east-1:4477***0123"},
		{"arn:aws:sns:us-east-1:x:447700900123:t", "arn:aws:sns:us-east-1:x:4477***0123:t"},
		{"arn:aws:sns:us-east-1:15555550100:t", "arn:aws:sns:us-east-1:1555***0100:t"},
		// A GET callback's query encodes the '+'.
		{"?From=%2B15555550100&To=%2b447700900123&Id=%2B1234567", "?From=%2B1555***0100&To=%2b4477***0123&Id=%2B1234567"},
		// After a '+' the digits are a number whatever follows.
		{"z=%2B15553334444abc&w=+15553334444_x", "z=%2B1555***4444abc&w=+1555***4444_x"},
		// Written in groups, after a '+' (as typed, or URL-encoded).
		{"call +1 (415) 555-0123 now", "call +1415***0123 now"},
		{"note=call%20me%20at%20%2B1%20415%20555%200123&q=1", "note=call%20me%20at%20%2B1415***0123&q=1"},
		{"From=%2B44+20+7946+0958&x=1", "From=%2B4420***0958&x=1"},
		{"+44.20.7946.0958", "+4420***0958"},
		{"+1 - 415 - 555 - 0123", "+1415***0123"},
		{"tel:+1/415/555/0123", "tel:+1415***0123"},
		// Digits after a number: masked with it, up to 15; the rest kept.
		{"+44 20 7946 0958 10 30", "+4420***5810 30"},
		{"+1 415 555 01 23 45 67 89", "+1415***4567 89"},
		{"+1 234 567 890 123 456 7", "+1234***0123 456 7"},
		// Two numbers side by side are two numbers.
		{"+44 20 7946 0958/+44 20 7946 0959", "+4420***0958/+4420***0959"},
		{"call +1-415-555-0123/+1-415-555-0199", "call +1415***0123/+1415***0199"},
		{"+1 415 555 0123 +1 415 555 0199", "+1415***0123 +1415***0199"},
		{"From=%2B1+415+555+0123&To=%2B1+415+555+0199", "From=%2B1415***0123&To=%2B1415***0199"},
		// URL-encoded, every '+' is a space.
		{"From=%2B1+%28415%29+555-0123", "From=%2B1415***0123"},
		{"From=%2B1+(415)+555-0123", "From=%2B1415***0123"},
		{"From=%2B1+-+415+-+555+-+0123", "From=%2B1415***0123"},
		// Too few digits, or one group only: not a grouped number.
		{"+1 2 3 and 4", "+1 2 3 and 4"},
		{"retry +1 in 5s", "retry +1 in 5s"},
		{"", ""},
	} {
		if got := MaskNumbers(tc.in); got != tc.want {
			t.Errorf("MaskNumbers(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMaskingLogger(t *testing.T) {
	var out syncWriter
	log := maskingLogger(slog.New(slog.NewJSONHandler(&out, nil)))
	log = log.With("to", "+15555550199")
	log.WithGroup("g").Info("from +15555550100", "err", errors.New("bad number +15555550111"),
		"numbers", []string{"+15555550122"}, slog.Group("inner", "n", "+15555550133"), "count", 15555550144)
	got := out.String()
	for _, full := range []string{"+15555550199", "+15555550100", "+15555550111", "+15555550122", "+15555550133"} {
		if strings.Contains(got, full) {
			t.Errorf("log holds %s: %s", full, got)
		}
	}
	for _, masked := range []string{"+1555***0199", "+1555***0100", "+1555***0111", "+1555***0122", "+1555***0133", "15555550144"} {
		if !strings.Contains(got, masked) {
			t.Errorf("log lacks %s: %s", masked, got)
		}
	}
	if maskingLogger(log) != log {
		t.Error("maskingLogger wraps a masking logger again")
	}
}

// Each kind of attribute is masked on its own too, behind a clean message
// (the handler skips records with nothing to mask).
func TestMaskingLoggerEachKind(t *testing.T) {
	for name, attr := range map[string]slog.Attr{
		"string":  slog.String("to", "+15555550199"),
		"error":   slog.Any("err", errors.New("bad number +15555550199")),
		"strings": slog.Any("numbers", []string{"ok", "+15555550199"}),
		"group":   slog.Group("inner", "n", "+15555550199"),
		"valuer":  slog.Any("v", numberValuer{}),
	} {
		var out syncWriter
		maskingLogger(slog.New(slog.NewJSONHandler(&out, nil))).LogAttrs(context.Background(), slog.LevelInfo, "clean", slog.Int("n", 1), attr)
		if got := out.String(); strings.Contains(got, "+15555550199") || !strings.Contains(got, "+1555***0199") {
			t.Errorf("%s: %s", name, got)
		}
	}
	var out syncWriter
	maskingLogger(slog.New(slog.NewJSONHandler(&out, nil))).Info("clean", "id", "evt_1", "n", 3)
	if got := out.String(); !strings.Contains(got, `"id":"evt_1"`) || !strings.Contains(got, `"n":3`) {
		t.Errorf("a clean record changed: %s", got)
	}
}

type numberValuer struct{}

func (numberValuer) LogValue() slog.Value { return slog.StringValue("+15555550199") }

func BenchmarkMaskNumbersClean(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		MaskNumbers("delivery attempt evt_01JD3R6Q9W8ZK4T5N2M7XB0C1D HTTP 502")
	}
}

// FuzzMaskNumbers: a phone number after a '+', written whole or in groups
// with any of the separators people and URL encoders use, never survives
// masking, whatever text stands around it (text without digits, so that
// the number's are the only ones).
func FuzzMaskNumbers(f *testing.F) {
	f.Add("call me at ", " now", uint64(14155550123), uint8(0))
	f.Add("note=", "&q=x", uint64(447946095812), uint8(5))
	f.Fuzz(func(t *testing.T, prefix, suffix string, n uint64, style uint8) {
		if strings.ContainsAny(prefix+suffix, "0123456789") {
			return
		}
		digits := strconv.FormatUint(n%1e15, 10)
		if len(digits) < 8 {
			return
		}
		seps := []string{"", " ", "-", ".", "%20", "+", ") ", " ("}
		sep := seps[int(style)%len(seps)]
		plus := []string{"+", "%2B", "%2b"}[int(style/8)%3]
		var num strings.Builder
		for i := 0; i < len(digits); i += 3 {
			if i > 0 {
				num.WriteString(sep)
			}
			num.WriteString(digits[i:min(i+3, len(digits))])
		}
		out := MaskNumbers(prefix + plus + num.String() + suffix)
		kept := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, out)
		if strings.Contains(kept, digits) {
			t.Errorf("MaskNumbers(%q) = %q: the number %s survives", prefix+plus+num.String()+suffix, out, digits)
		}
	})
}
