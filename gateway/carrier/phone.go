package carrier

import "strings"

// E164 normalizes a phone number as carriers send it. Spaces are removed
// from numbers; a number that already starts with "+" keeps it; a number of
// 8 to 15 digits without "+" gets one (Vonage, Plivo, Sinch, Infobip and
// MessageBird omit it). Everything else is returned as given, apart from
// surrounding space: short codes (3 to 6 digits), numbers in national format
// (a leading 0, which no country code has), alphanumeric sender ids, and
// channel addresses such as Twilio's "whatsapp:+15555550100".
func E164(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.IndexByte(s, ':') >= 0 {
		return s
	}
	compact := s
	if strings.IndexByte(s, ' ') >= 0 {
		compact = strings.ReplaceAll(s, " ", "")
	}
	digits, plus := strings.CutPrefix(compact, "+")
	if !allDigits(digits) {
		return s
	}
	switch {
	case plus:
		return compact
	case len(digits) >= 8 && len(digits) <= 15 && digits[0] != '0':
		return "+" + digits
	}
	return digits
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
