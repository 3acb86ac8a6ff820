//! Admission control shared by every receiver: the in-flight byte budget and the memory
//! limiter's verdict, consulted before a request is decoded (DESIGN §4).

/// Process-wide admission state; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Admission {}
