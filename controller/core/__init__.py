"""Pure decision logic: no I/O, no clock reads, no globals. Time is always passed in."""
