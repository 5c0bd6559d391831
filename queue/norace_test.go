//go:build !race

package queue

// raceScale: see race_test.go.
const raceScale = 1
