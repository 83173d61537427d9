package switchboard

import (
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends e's JSON to b: the bytes encoding/json's Marshal makes
// of e (the same field order, omissions and escaping), without its
// reflection. The gateway encodes every event it stores with it; the test
// beside it holds the two encoders to the same output.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, e.ID)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, e.Type)
	b = append(b, `,"timestamp":`...)
	b = e.Timestamp.appendJSON(b)
	b = append(b, `,"tenant":`...)
	b = appendJSONString(b, e.Tenant)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, e.Source)
	b = append(b, `,"carrier":`...)
	b = appendJSONString(b, e.Carrier)
	b = append(b, `,"data":{`...)
	d := &e.Data
	first := true
	field := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	str := func(name, v string) {
		if v != "" {
			field(name)
			b = appendJSONString(b, v)
		}
	}
	str("message_id", d.MessageID)
	str("from", d.From)
	str("to", d.To)
	str("text", d.Text)
	if len(d.Media) > 0 {
		field("media")
		b = append(b, '[')
		for i, m := range d.Media {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"url":`...)
			b = appendJSONString(b, m.URL)
			if m.ContentType != "" {
				b = append(b, `,"content_type":`...)
				b = appendJSONString(b, m.ContentType)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if d.Segments != 0 {
		field("segments")
		b = strconv.AppendInt(b, int64(d.Segments), 10)
	}
	str("status", d.Status)
	str("carrier_status", d.CarrierStatus)
	if d.Error != nil {
		field("error")
		b = append(b, '{')
		if d.Error.Code != "" {
			b = append(b, `"code":`...)
			b = appendJSONString(b, d.Error.Code)
		}
		if d.Error.Message != "" {
			if d.Error.Code != "" {
				b = append(b, ',')
			}
			b = append(b, `"message":`...)
			b = appendJSONString(b, d.Error.Message)
		}
		b = append(b, '}')
	}
	if d.OccurredAt != nil {
		field("occurred_at")
		b = d.OccurredAt.appendJSON(b)
	}
	return append(b, "}}"...)
}

func (t Time) appendJSON(b []byte) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, timeLayout)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json quotes it: with HTML
// escaping of <, > and &, \u escapes for other control bytes, invalid
// UTF-8 replaced by U+FFFD and U+2028, U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
