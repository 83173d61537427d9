package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/webhook"
)

func ExampleSign() {
	key, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	sig := webhook.Sign([][]byte{key}, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	fmt.Println(sig)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}

// Rotating a secret: sign with the old and the new one while receivers
// move over; each receiver verifies with the one it knows.
func ExampleSetHeaders() {
	oldKey, _ := webhook.ParseSecret("whsec_b2xkIHNlY3JldCBrZXkgYnl0ZXM=")
	newKey, _ := webhook.ParseSecret("whsec_bmV3IHNlY3JldCBrZXkgYnl0ZXM=")
	body := []byte(`{"type":"message.received"}`)
	now := time.Unix(1736937000, 0)

	req, _ := http.NewRequest(http.MethodPost, "https://crm.example/hooks/sms", strings.NewReader(string(body)))
	webhook.SetHeaders(req.Header, [][]byte{oldKey, newKey}, "evt_01JD3R6Q9W8ZK4T5N2M7XB0C1D", now, body)

	fmt.Println(req.Header.Get(webhook.HeaderTimestamp))
	fmt.Println(len(strings.Fields(req.Header.Get(webhook.HeaderSignature))), "signatures")
	fmt.Println(webhook.Verify([][]byte{newKey}, req.Header, body, now, 0))
	// Output:
	// 1736937000
	// 2 signatures
	// <nil>
}

func ExampleVerify() {
	key, _ := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := webhook.Verify([][]byte{key}, r.Header, body, time.Unix(1614265330, 0), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	req := httptest.NewRequest(http.MethodPost, "/hooks", strings.NewReader(`{"test": 2432232314}`))
	req.Header.Set(webhook.HeaderID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	req.Header.Set(webhook.HeaderTimestamp, "1614265330")
	req.Header.Set(webhook.HeaderSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code)

	req = httptest.NewRequest(http.MethodPost, "/hooks", strings.NewReader(`{"test": 1}`))
	req.Header = req.Header.Clone()
	req.Header.Set(webhook.HeaderID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	req.Header.Set(webhook.HeaderTimestamp, "1614265330")
	req.Header.Set(webhook.HeaderSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	rec = httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// 204
	// 401 webhook: no matching signature
}
