//! `memory_limiter`: refuses new data with retryable errors while the process is above its
//! soft memory limit.
