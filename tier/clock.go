package tier

import "time"

// timeNow is the clock for LastModified of in-memory objects.
var timeNow = time.Now
