//! `nop`: a receiver that produces nothing, for configs and benchmarks.
