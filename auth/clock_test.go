package auth_test

import "time"

// timeAt is a fixed modification time, t seconds after 2020-01-01.
func timeAt(t int) time.Time { return time.Date(2020, 1, 1, 0, 0, t, 0, time.UTC) }

func farFuture() time.Time { return time.Now().AddDate(10, 0, 0) }
