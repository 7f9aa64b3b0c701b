//go:build race

package wsconn

// raceEnabled is true when the tests run under -race, whose bookkeeping
// allocates on its own; allocation-counting tests then skip, and CI runs
// them again without -race.
const raceEnabled = true
