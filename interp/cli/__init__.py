"""The `interp` command line (click). Thin: all analysis logic lives in `interp`."""
