package gateway

import (
	"context"
	"log/slog"
	"strings"
)

// maskingLogger returns log with every phone number in its messages and
// string attributes masked (MaskNumbers): a last line of defence, so that a
// number that slips into an error message never reaches the log whole.
func maskingLogger(log *slog.Logger) *slog.Logger {
	if _, ok := log.Handler().(maskHandler); ok {
		return log
	}
	return slog.New(maskHandler{log.Handler()})
}

type maskHandler struct{ h slog.Handler }

func (m maskHandler) Enabled(ctx context.Context, l slog.Level) bool { return m.h.Enabled(ctx, l) }

func (m maskHandler) Handle(ctx context.Context, r slog.Record) error {
	if !recordNeedsMask(r) {
		return m.h.Handle(ctx, r) // the common case: nothing to mask, nothing copied
	}
	out := slog.NewRecord(r.Time, r.Level, MaskNumbers(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(maskAttr(a))
		return true
	})
	return m.h.Handle(ctx, out)
}

func (m maskHandler) WithAttrs(as []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(as))
	for i, a := range as {
		masked[i] = maskAttr(a)
	}
	return maskHandler{m.h.WithAttrs(masked)}
}

func (m maskHandler) WithGroup(name string) slog.Handler { return maskHandler{m.h.WithGroup(name)} }

// recordNeedsMask reports whether masking could change r (maskAttr would
// change one of its attributes, or MaskNumbers its message).
func recordNeedsMask(r slog.Record) bool {
	need := mayHoldNumber(r.Message)
	if !need {
		r.Attrs(func(a slog.Attr) bool {
			need = attrNeedsMask(a.Value)
			return !need
		})
	}
	return need
}

func attrNeedsMask(v slog.Value) bool {
	switch v.Kind() {
	case slog.KindString:
		return mayHoldNumber(v.String())
	case slog.KindGroup, slog.KindLogValuer:
		return true // rare: let maskAttr resolve and walk it
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return true
		case []string:
			for _, s := range x {
				if mayHoldNumber(s) {
					return true
				}
			}
		}
	}
	return false
}

func maskAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, MaskNumbers(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = maskAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, MaskNumbers(x.Error()))
		case []string:
			out := make([]string, len(x))
			for i, s := range x {
				out[i] = MaskNumbers(s)
			}
			return slog.Any(a.Key, out)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// MaskNumbers masks every phone number in s, keeping its first digits and
// its last four: "+15555550100" becomes "+1555***0100". A number is a '+'
// (or its URL encoding "%2B") and 8–15 digits, whatever follows, also
// written in groups ("+1 415 555-0123" becomes "+1415***0123"), or 10–15
// digits standing alone (not part of an id, a stream entry id "<ms>-<seq>",
// a decimal or a word). Short codes stay.
func MaskNumbers(s string) string {
	if !mayHoldNumber(s) {
		return s // the common case: nothing to do, no allocation
	}
	var b strings.Builder
	b.Grow(len(s))
	i := 0
	for i < len(s) {
		c := s[i]
		if !isDigit(c) {
			b.WriteByte(c)
			i++
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		run := s[i:j]
		// '+', or "%2B" as a URL query encodes it (a GET callback's URL).
		plus := afterPlus(s, i)
		if plus && len(run) < 8 {
			if end, digits, ok := spacedNumber(s, i); ok {
				b.WriteString(maskDigits(string(digits)))
				i = end
				continue
			}
		}
		before := i > 0 && !plus && (isJoiner(s[i-1]) || s[i-1] == '.' && i > 1 && isDigit(s[i-2]))
		after := j < len(s) && (isJoiner(s[j]) || s[j] == '.' && j+1 < len(s) && isDigit(s[j+1]))
		switch {
		case plus && len(run) >= 8 && len(run) <= 15 && (j == len(s) || !isDigit(s[j])):
			// After a '+' it is a number whatever follows ("+15553334444abc").
			b.WriteString(maskDigits(run))
		case !plus && len(run) >= 10 && len(run) <= 15 && !before && !after && !arnAccount(s, i, j):
			b.WriteString(maskDigits(run))
		default:
			b.WriteString(run)
		}
		i = j
	}
	return b.String()
}

// maskDigits keeps the last four digits and up to four leading ones, hiding
// at least three.
func maskDigits(run string) string {
	keep := min(4, len(run)-4-3)
	return run[:keep] + "***" + run[len(run)-4:]
}

// mayHoldNumber reports whether MaskNumbers could change s: it has a run
// of 8 digits, or a digit after a '+' (a number written in groups).
func mayHoldNumber(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			n++
			if n >= 8 || n == 1 && afterPlus(s, i) {
				return true
			}
		} else {
			n = 0
		}
	}
	return false
}

// afterPlus reports whether s[i] follows a '+' or its URL encoding "%2B".
func afterPlus(s string, i int) bool {
	return i > 0 && s[i-1] == '+' || i > 2 && s[i-3] == '%' && s[i-2] == '2' && (s[i-1] == 'B' || s[i-1] == 'b')
}

// spacedNumber reads, from s[i] (the first digit after a '+'), a phone
// number written in groups: digit runs joined by up to three separators (a
// space, '-', '.', '/', '(' or ')', or as a URL encodes them "%20", "+",
// "%28", "%29"), as in "+1 (415) 555-0123" or "+1 - 415 - 555 - 0123"; a
// '+' with another separator begins the next number instead. It
// returns where the number ends and its digits; ok is false unless 8–15
// digits stand in two groups or more. Groups that would make it longer than
// 15 digits are left after it (digits that follow a number are no reason
// to log it whole).
func spacedNumber(s string, i int) (end int, digits []byte, ok bool) {
	literal := s[i-1] == '+' // not "%2B"
	groups, j := 0, i
	for {
		k := j
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		if len(digits)+k-j > 15 {
			break // ends before this group
		}
		digits = append(digits, s[j:k]...)
		groups++
		end = k
		n, plus := 0, false
		for sep := 0; sep < 3; sep++ {
			m := separatorLen(s, k+n)
			if m == 0 {
				break
			}
			plus = plus || s[k+n] == '+'
			n += m
		}
		// A '+' alone is a space as a URL query encodes it; right before
		// the digits and after another separator ("/+44", " +1") it starts
		// the next number — unless this number was URL-encoded ("%2B1"),
		// where every '+' is a space ("%2B1+%28415%29+555").
		if n == 0 || k+n >= len(s) || !isDigit(s[k+n]) || plus && n > 1 && literal && s[k+n-1] == '+' {
			break
		}
		j = k + n
	}
	return end, digits, groups > 1 && len(digits) >= 8
}

// separatorLen is the length of the separator at s[k] that may join the
// digit groups of a written phone number, 0 if there is none.
func separatorLen(s string, k int) int {
	if k >= len(s) {
		return 0
	}
	switch s[k] {
	case ' ', '-', '.', '/', '(', ')', '+':
		return 1
	case '%':
		if k+2 < len(s) {
			switch s[k+1 : k+3] {
			case "20", "28", "29":
				return 3
			}
		}
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// arnAccount reports whether s[i:j] is the account field of an AWS ARN,
// arn:partition:service:region:account:resource (an SNS topic, which an
// SNS SubscribeURL logged for the operator to open holds unescaped): a
// 12-digit account id there is no phone number, and masking it would leave
// a URL that cannot be used.
func arnAccount(s string, i, j int) bool {
	if j-i != 12 || i == 0 || s[i-1] != ':' || j >= len(s) || s[j] != ':' {
		return false
	}
	k := strings.LastIndex(s[:i], "arn:")
	return k >= 0 && (k == 0 || !isJoiner(s[k-1])) &&
		strings.Count(s[k:i], ":") == 4 && !strings.ContainsAny(s[k:i], " \t\n&=?/+")
}

// isJoiner: a character that makes a digit run part of something larger
// than a phone number (a word, an id, a stream entry id); a '.' does when
// it makes a decimal.
func isJoiner(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-'
}
