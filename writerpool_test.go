package main

import (
	"runtime"
	"testing"
)

func TestWriterPoolDo(t *testing.T) {
	tests := []struct {
		name  string
		setup func(p *writerPool) (cleanup func())
	}{
		{"not started: inline", func(p *writerPool) func() { return func() {} }},
		{"idle worker", func(p *writerPool) func() { p.start(); return p.close }},
		{"all workers busy: inline", func(p *writerPool) func() {
			p.start()
			// Hand every worker a job that blocks; each send returns only
			// once a worker has taken it, so afterwards none is idle, and
			// do must run inline rather than wait.
			release, done := make(chan struct{}), make(chan struct{}, 2*runtime.GOMAXPROCS(0))
			for range cap(done) {
				p.jobs <- writeJob{f: func() { <-release }, done: done}
			}
			return func() { close(release); p.close() }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newWriterPool()
			cleanup := tt.setup(p)
			defer cleanup()
			done := make(chan struct{}, 1)
			for i := range 3 { // done is reused across calls
				ran := false
				p.do(func() { ran = true }, done)
				if !ran {
					t.Fatalf("call %d: do returned before f ran", i)
				}
			}
		})
	}
}
