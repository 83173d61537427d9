package carrier

import "testing"

func TestE164(t *testing.T) {
	tests := []struct{ in, want string }{
		{"+15555550100", "+15555550100"},
		{"15555550100", "+15555550100"},
		{"+1 555 555 0100", "+15555550100"},
		{"1 555 555 0100", "+15555550100"},
		{" 4915123456789 ", "+4915123456789"},
		{"12345678", "+12345678"},                          // 8 digits
		{"123456789012345", "+123456789012345"},            // 15 digits
		{"1234567890123456", "1234567890123456"},           // 16: not a number we know
		{"1234567", "1234567"},                             // 7 digits
		{"40404", "40404"},                                 // short code
		{"123", "123"},                                     // short code
		{"07911123456", "07911123456"},                     // national format
		{"MyShop", "MyShop"},                               // alphanumeric sender
		{"My Shop", "My Shop"},                             // spaces kept in names
		{"INFO-42", "INFO-42"},                             // alphanumeric
		{"whatsapp:+15555550100", "whatsapp:+15555550100"}, // channel address
		{"messenger:12345", "messenger:12345"},
		{"+", "+"},
		{"", ""},
		{"+44 20 7946 0958", "+442079460958"},
	}
	for _, tt := range tests {
		if got := E164(tt.in); got != tt.want {
			t.Errorf("E164(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
