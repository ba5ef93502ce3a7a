"""The guardian: a standard-library process beside the daemon that releases its lease the
moment the daemon dies."""
