package gateway

import (
	"context"
	"errors"
	"log/slog"
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
