//go:build !race

package wsconn

// raceEnabled: see race_on_test.go.
const raceEnabled = false
