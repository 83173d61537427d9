package switchboard

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// fullEvent has every field of Event set, so that a field added to Event
// without AppendJSON learning it fails TestAppendJSONMatchesMarshal.
func fullEvent() Event {
	at := time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.FixedZone("x", 3600))
	return Event{
		ID: "evt_01J0", Type: TypeStatus, Timestamp: NewTime(at),
		Tenant: "acme", Source: "tw", Carrier: "twilio",
		Data: EventData{
			MessageID: "SM1", From: "+15550001111", To: "+15550002222",
			Text:          "hi <b> & \"q\" \\ \n\t\r\b\f\x01\x1f \u2028\u2029 é 日本 \xff\xfe end",
			Media:         []Media{{URL: "https://m/1", ContentType: "image/png"}, {URL: "https://m/2"}},
			Segments:      3,
			Status:        StatusFailed,
			CarrierStatus: "failed",
			Error:         &Error{Code: "30003", Message: "Unreachable"},
			OccurredAt:    TimePtr(at),
		},
	}
}

// allSet reports the first zero field of v, walking structs.
func zeroField(v reflect.Value, path string) string {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[Time]() {
			if v.Interface().(Time).IsZero() {
				return path
			}
			return ""
		}
		for i := range v.NumField() {
			if z := zeroField(v.Field(i), path+"."+v.Type().Field(i).Name); z != "" {
				return z
			}
		}
		return ""
	case reflect.Pointer:
		if v.IsNil() {
			return path
		}
		return zeroField(v.Elem(), path)
	case reflect.Slice:
		if v.Len() == 0 {
			return path
		}
		return zeroField(v.Index(0), path+"[0]")
	}
	if v.IsZero() {
		return path
	}
	return ""
}

func TestAppendJSONMatchesMarshal(t *testing.T) {
	full := fullEvent()
	if z := zeroField(reflect.ValueOf(full), "Event"); z != "" {
		t.Fatalf("fullEvent leaves %s unset: set it, and teach AppendJSON the field", z)
	}
	cases := map[string]Event{"full": full, "empty": {}}
	e := full
	e.Data = EventData{Text: "only text"}
	cases["text only"] = e
	e = full
	e.Data.Error = &Error{Message: "no code"}
	e.Data.Media = []Media{{URL: ""}}
	cases["error without code"] = e
	e = full
	e.Data.Error = &Error{}
	e.Data.Segments = -1
	cases["empty error"] = e
	for name, ev := range cases {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(&ev)
			if err != nil {
				t.Fatal(err)
			}
			if got := ev.AppendJSON(nil); !bytes.Equal(got, want) {
				t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("hi <b> & \"q\"", "+1555\x00", "\u2028\xff", "code", 2)
	f.Add("", "", "", "", 0)
	f.Fuzz(func(t *testing.T, text, from, msg, code string, segments int) {
		e := fullEvent()
		e.Data.Text, e.Data.From, e.Data.To, e.Tenant = text, from, msg, code
		e.Data.Segments = segments
		e.Data.Error = &Error{Code: code, Message: msg}
		e.Data.Media = []Media{{URL: text, ContentType: from}}
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkEventJSON(b *testing.B) {
	e := fullEvent()
	e.Data.Text = "Hello there, this is a reply to your message."
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = e.AppendJSON(buf[:0])
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(&e)
		}
	})
}
