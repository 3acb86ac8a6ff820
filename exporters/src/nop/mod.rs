//! `nop`: an exporter that accepts and discards everything, for measuring the pipeline alone.
