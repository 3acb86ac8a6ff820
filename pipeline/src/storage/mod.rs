//! `file_storage` extensions: the on-disk write-ahead log behind persistent sending queues.

/// The `file_storage` extensions of a service, by id; exporters look theirs up by
/// `sending_queue.storage`.
#[derive(Clone, Default)]
pub struct StorageExtensions {}
