package redistest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRestartWithoutPersistence(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	ctx := context.Background()
	rdb := srv.Client(t)
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	opt, err := redis.ParseURL(srv.URL())
	if err != nil || opt.Addr != srv.Addr || opt.DB != 0 {
		t.Errorf("URL() = %q (%v), want redis://%s/0", srv.URL(), err, srv.Addr)
	}
	if save, err := rdb.ConfigGet(ctx, "save").Result(); err != nil || save["save"] != "" {
		t.Errorf("save = %q (%v), want \"\"", save["save"], err)
	}

	addr := srv.Addr
	srv.Kill()
	if ping(addr) {
		t.Fatal("server answers PING after Kill")
	}
	srv.Start()
	if srv.Addr != addr {
		t.Errorf("Addr after restart = %s, want %s", srv.Addr, addr)
	}
	if _, err := rdb.Get(ctx, "k").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET after a restart without persistence: err = %v, want redis.Nil", err)
	}
}

func TestRestartWithAOF(t *testing.T) {
	t.Parallel()
	srv := Start(t, WithAOF())
	ctx := context.Background()
	rdb := srv.Client(t)
	if aof, err := rdb.ConfigGet(ctx, "appendonly").Result(); err != nil || aof["appendonly"] != "yes" {
		t.Errorf("appendonly = %q (%v), want yes", aof["appendonly"], err)
	}
	if err := rdb.Set(ctx, "k", "v", time.Hour).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	srv.Stop()
	srv.Start()
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Errorf("GET after Stop and Start with AOF = %q, %v; want v", v, err)
	}
}
