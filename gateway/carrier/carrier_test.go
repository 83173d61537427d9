package carrier

import (
	"slices"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	want := []string{"africastalking", "aws-sns", "bandwidth", "basic", "bird", "hmac", "infobip", "messagebird", "plivo", "sinch", "standard-webhooks", "telnyx", "twilio", "vonage-messages", "vonage-sms"}
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	if _, err := New(Config{Carrier: "nokia"}); err == nil || !strings.Contains(err.Error(), `"nokia"`) {
		t.Fatalf("New(nokia) = %v", err)
	}
	// Every carrier refuses an empty configuration, naming what is missing
	// and never echoing a secret.
	for _, name := range want {
		if _, err := New(Config{Carrier: name}); err == nil || !strings.HasPrefix(err.Error(), name+": ") {
			t.Errorf("New(%s with no settings) = %v, want an error starting %q", name, err, name+": ")
		}
	}
}
