package main

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestMemReleaserReleasesAfterBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemReleaser()
		m.burst = 10
		releases := 0
		m.release = func() { releases++ }
		stop := make(chan struct{})
		go m.run(stop)

		steps := []struct {
			name     string
			accept   int // connections before the pause
			pause    time.Duration
			releases int // total expected after the pause
		}{
			{"small burst", 9, 3 * releaseQuiet, 0},
			{"burst completed", 1, 3 * releaseQuiet, 1},
			{"quiet afterwards", 0, 3 * releaseQuiet, 1},
			{"second burst", 25, 3 * releaseQuiet, 2},
		}
		for _, st := range steps {
			for range st.accept {
				m.noteAccepted()
			}
			time.Sleep(st.pause)
			synctest.Wait()
			if releases != st.releases {
				t.Errorf("%s: %d releases; want %d", st.name, releases, st.releases)
			}
		}

		// While connections keep arriving, nothing is released.
		for range 5 * 10 {
			m.noteAccepted()
			time.Sleep(releaseQuiet / 10)
		}
		synctest.Wait()
		if releases != 2 {
			t.Errorf("during a steady stream: %d releases; want still 2", releases)
		}
		close(stop)
		<-m.done
	})
}
