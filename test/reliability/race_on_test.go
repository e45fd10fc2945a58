//go:build race

package reliability

// raceEnabled: the race detector slows the in-process scenarios tenfold, so they run fewer
// iterations under it.
const raceEnabled = true
