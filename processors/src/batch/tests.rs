use super::*;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sluice_pipeline::{AckWaiter, Logs};

fn logs(n: usize) -> Batch<Logs> {
    Batch::from_resources(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord::default(); n],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// Records what it is given and answers as the ack point it claims would.
struct Collect {
    got: Mutex<Vec<usize>>,
    point: AckPoint,
    /// Refusals (throttled) to answer before accepting.
    refuse: AtomicUsize,
}

impl Collect {
    fn new(point: AckPoint) -> Arc<Self> {
        Arc::new(Collect {
            got: Mutex::new(Vec::new()),
            point,
            refuse: AtomicUsize::new(0),
        })
    }
    fn total(&self) -> usize {
        self.got.lock().unwrap().iter().sum()
    }
}

#[async_trait]
impl Consumer<Logs> for Collect {
    async fn consume(&self, batch: Batch<Logs>) {
        if self.refuse.load(Ordering::SeqCst) > 0 {
            self.refuse.fetch_sub(1, Ordering::SeqCst);
            batch.settle(&Err(DeliveryError::Throttled {
                reason: "full".into(),
                retry_after: StdDuration::from_millis(1),
            }));
            return;
        }
        self.got.lock().unwrap().push(batch.items());
        batch.settle(&Ok(()));
    }
    fn ack_point(&self) -> AckPoint {
        self.point
    }
}

fn processor(next: Arc<Collect>, timeout: StdDuration) -> (DynConsumer<Logs>, Arc<dyn Lifecycle>) {
    let c = BatchConfig {
        send_batch_size: 1000,
        timeout: Duration(timeout),
        ..BatchConfig::default()
    };
    let builder = Builder {
        cfg: c,
        name: "batch".into(),
        ctx: BuildContext::default(),
        lifecycle: Mutex::new(None),
    };
    let consumer = builder.wrap::<Logs>(next).unwrap();
    let lifecycle = builder.lifecycle.lock().unwrap().take().unwrap();
    (consumer, lifecycle)
}

async fn send(consumer: &DynConsumer<Logs>, n: usize) -> AckWaiter {
    let (ack, waiter) = Ack::new();
    consumer.consume(logs(n).with_ack(ack)).await;
    waiter
}

const HOUR: StdDuration = StdDuration::from_secs(3600);

fn later(secs: u64) -> Instant {
    Instant::now() + StdDuration::from_secs(secs)
}

#[tokio::test]
async fn flush_hands_on_everything_pending_without_stopping() {
    let next = Collect::new(AckPoint::Delivered);
    let (consumer, lifecycle) = processor(next.clone(), HOUR);
    lifecycle.start().await.unwrap();
    consumer.consume(logs(3)).await;
    consumer.consume(logs(4)).await;
    lifecycle.flush(later(10)).await;
    assert_eq!(next.total(), 7);
    // Still running: later data is batched and flushed again.
    consumer.consume(logs(2)).await;
    lifecycle.flush(later(10)).await;
    assert_eq!(next.total(), 9);
    lifecycle.shutdown(later(1)).await;
}

/// In front of stages that answer on memory, a sender is answered once its data is held,
/// long before the hour-long timeout; the data is still batched and handed on at a flush.
#[tokio::test]
async fn answers_on_hold_when_everything_after_answers_on_memory() {
    let next = Collect::new(AckPoint::Memory);
    let (consumer, lifecycle) = processor(next.clone(), HOUR);
    lifecycle.start().await.unwrap();
    for n in [3, 4] {
        let waiter = send(&consumer, n).await;
        assert_eq!(
            tokio::time::timeout(StdDuration::from_secs(5), waiter).await,
            Ok(Ok(()))
        );
    }
    assert_eq!(
        next.total(),
        0,
        "nothing handed on before the timeout or a flush"
    );
    lifecycle.flush(later(10)).await;
    assert_eq!(*next.got.lock().unwrap(), vec![7]);
    lifecycle.shutdown(later(1)).await;
}

/// The senders were answered, so a refusal behind is waited out, not dropped.
#[tokio::test]
async fn answered_data_refused_behind_is_retried_until_taken() {
    let next = Collect::new(AckPoint::Memory);
    next.refuse.store(3, Ordering::SeqCst);
    let (consumer, lifecycle) = processor(next.clone(), StdDuration::from_millis(1));
    lifecycle.start().await.unwrap();
    send(&consumer, 5).await.await.unwrap();
    lifecycle.flush(later(10)).await;
    assert_eq!(next.total(), 5);
    assert_eq!(next.refuse.load(Ordering::SeqCst), 0);
    lifecycle.shutdown(later(1)).await;
}

/// In front of a persistent queue nothing is held: each request goes on at once, so its
/// answer still means "on disk".
#[tokio::test]
async fn passes_each_request_on_at_once_in_front_of_a_persistent_queue() {
    let next = Collect::new(AckPoint::Stored);
    let (consumer, lifecycle) = processor(next.clone(), HOUR);
    lifecycle.start().await.unwrap();
    let waiter = send(&consumer, 3).await;
    assert_eq!(waiter.await, Ok(()));
    assert_eq!(*next.got.lock().unwrap(), vec![3]);
    lifecycle.shutdown(later(1)).await;
}

/// Where delivery is what the sender waits for, the answer rides with the batch.
#[tokio::test]
async fn holds_answers_until_delivery_when_delivery_is_asked_for() {
    let next = Collect::new(AckPoint::Delivered);
    let (consumer, lifecycle) = processor(next.clone(), HOUR);
    lifecycle.start().await.unwrap();
    let mut waiter = send(&consumer, 3).await;
    tokio::time::sleep(StdDuration::from_millis(20)).await;
    assert!(futures::poll!(&mut waiter).is_pending());
    lifecycle.flush(later(10)).await;
    assert_eq!(waiter.await, Ok(()));
    lifecycle.shutdown(later(1)).await;
}

fn processor_with(next: Arc<Collect>, cfg: BatchConfig) -> (DynConsumer<Logs>, Arc<dyn Lifecycle>) {
    let builder = Builder {
        cfg,
        name: "batch".into(),
        ctx: BuildContext::default(),
        lifecycle: Mutex::new(None),
    };
    let consumer = builder.wrap::<Logs>(next).unwrap();
    let lifecycle = builder.lifecycle.lock().unwrap().take().unwrap();
    (consumer, lifecycle)
}

/// As in the OTel Collector, `timeout: 0` and `send_batch_size: 0` send each request on at
/// once (cut to `send_batch_max_size`) instead of merging.
#[tokio::test]
async fn a_zero_timeout_or_trigger_sends_each_request_on_at_once() {
    for cfg in [
        BatchConfig {
            timeout: Duration(StdDuration::ZERO),
            send_batch_max_size: 4,
            send_batch_size: 2,
            ..BatchConfig::default()
        },
        BatchConfig {
            send_batch_size: 0,
            send_batch_max_size: 4,
            ..BatchConfig::default()
        },
    ] {
        let next = Collect::new(AckPoint::Memory);
        let (consumer, lifecycle) = processor_with(next.clone(), cfg);
        lifecycle.start().await.unwrap();
        send(&consumer, 3).await.await.unwrap();
        send(&consumer, 6).await.await.unwrap();
        assert_eq!(*next.got.lock().unwrap(), vec![3, 4, 2]);
        lifecycle.shutdown(later(1)).await;
    }
}

fn from_tenant(tenant: &str, n: usize) -> Batch<Logs> {
    let mut m = sluice_pipeline::metadata::ClientMetadata::default();
    m.add("X-Tenant", tenant);
    logs(n).with_metadata(Arc::new(m))
}

/// `metadata_keys` batches each tenant apart, and `metadata_cardinality_limit` refuses a new
/// tenant beyond the limit, permanently, while known tenants go on.
#[tokio::test]
async fn metadata_keys_partition_and_the_cardinality_limit_refuses_new_combinations() {
    let next = Collect::new(AckPoint::Memory);
    let cfg = BatchConfig {
        timeout: Duration(HOUR),
        metadata_keys: vec!["x-tenant".into()],
        metadata_cardinality_limit: 2,
        ..BatchConfig::default()
    };
    let (consumer, lifecycle) = processor_with(next.clone(), cfg);
    lifecycle.start().await.unwrap();
    for (tenant, n) in [("a", 1), ("b", 2), ("a", 3)] {
        let (ack, waiter) = Ack::new();
        consumer.consume(from_tenant(tenant, n).with_ack(ack)).await;
        assert_eq!(waiter.await, Ok(()));
    }
    let (ack, waiter) = Ack::new();
    consumer.consume(from_tenant("c", 1).with_ack(ack)).await;
    assert!(matches!(waiter.await, Err(DeliveryError::Permanent { .. })));
    lifecycle.flush(later(10)).await;
    let mut got = next.got.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, vec![2, 4]);
    lifecycle.shutdown(later(1)).await;
}
