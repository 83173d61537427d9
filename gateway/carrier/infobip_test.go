package carrier

import (
	"errors"
	"testing"

	switchboard "github.com/switchboard-gw/switchboard"
)

var infobipCfg = Config{Carrier: "infobip", Username: "ib-webhook-user", Password: "ib-webhook-pass"}

func TestInfobip(t *testing.T) {
	conformance{
		cfg: infobipCfg, dir: "infobip",
		wrong:   Config{Carrier: "infobip", Username: "ib-webhook-user", Password: "not-the-pass"},
		secrets: []string{"ib-webhook-pass", "not-the-pass"},
		unsign:  func(r *Request) { r.Header.Del("Authorization") },
	}.run(t)
	if got := loadFixture(t, "infobip", "dlr").Header.Get("Authorization"); got != "Basic aWItd2ViaG9vay11c2VyOmliLXdlYmhvb2stcGFzcw==" {
		t.Fatalf("fixture Authorization = %q", got)
	}
}

func TestInfobipParse(t *testing.T) {
	c := mustNew(t, infobipCfg)
	body := `{"results":[` +
		`{"messageId":"1","to":"15555550100","sender":"InfoSMS","status":{"groupId":2,"groupName":"UNDELIVERABLE","id":9,"name":"UNDELIVERABLE_NOT_DELIVERED"},"error":{"groupId":1,"groupName":"HANDSET_ERRORS","id":27,"name":"EC_ABSENT_SUBSCRIBER","description":"Absent Subscriber","permanent":false},"doneAt":"2025-01-15T10:31:05.456+0000","messageCount":2},` +
		`{"messageId":"2","to":"15555550101","from":"15555550199","status":{"groupId":1,"groupName":"PENDING","id":7,"name":"PENDING_ACCEPTED"}},` +
		`{"messageId":"3","to":"15555550102","status":{"groupId":5,"groupName":"REJECTED","name":"REJECTED_DESTINATION"}}]}`
	events, err := c.Parse(&Request{Body: []byte(body)})
	if err != nil || len(events) != 3 {
		t.Fatalf("Parse = %d events, %v", len(events), err)
	}
	if d := events[0].Data; d.Status != "undelivered" || d.CarrierStatus != "UNDELIVERABLE_NOT_DELIVERED" || d.From != "InfoSMS" || d.Error == nil || d.Error.Code != "27" || d.Error.Message != "Absent Subscriber" || d.Segments != 2 || d.OccurredAt == nil {
		t.Errorf("undeliverable = %+v", d)
	}
	if d := events[1].Data; d.Status != "queued" || d.From != "+15555550199" || d.Error != nil {
		t.Errorf("pending accepted = %+v", d)
	}
	if d := events[2].Data; d.Status != "failed" {
		t.Errorf("rejected = %+v", d)
	}
	for _, bad := range []string{``, `[]`, `null`, `{}`, `{"results":[]}`, `{"results":[{"to":"1"}]}`} {
		if _, err := c.Parse(&Request{Body: []byte(bad)}); !errors.Is(err, switchboard.ErrBadPayload) {
			t.Errorf("Parse(%s) = %v", bad, err)
		}
	}
}

func FuzzInfobip(f *testing.F) {
	fuzzCarrier(f, infobipCfg, "infobip", []string{"Authorization"}, false)
}
