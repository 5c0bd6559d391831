//go:build race

package queue

// raceScale shrinks the long randomized and load tests under the race
// detector, which slows this single-goroutine package tenfold and finds
// nothing more in it.
const raceScale = 4
