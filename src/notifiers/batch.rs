//! Batches formed from concurrent deliveries: each delivery hands in its
//! payload and waits for its own outcome; one request carries up to
//! `items` payloads (or `bytes`), waiting at most `linger` after the first.
//! Splunk HEC sends one result to every member of a batch; Security Hub one
//! per finding.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::{FailureReason, SendError};

/// What one batch may hold.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub items: usize,
    pub bytes: usize,
    pub linger: Duration,
}

/// Sends one batch; answers one outcome per payload, in order.
pub type PostBatch =
    Arc<dyn Fn(Vec<Vec<u8>>) -> BoxFuture<'static, Vec<Result<(), SendError>>> + Send + Sync>;

type Waiter = oneshot::Sender<Result<(), SendError>>;

pub struct Batcher {
    limits: BatchLimits,
    post: PostBatch,
    /// Started on first use, inside the runtime (config is read outside it).
    tx: OnceLock<mpsc::Sender<(Vec<u8>, Waiter)>>,
}

fn stopped() -> SendError {
    SendError::retryable(FailureReason::Connect, "batcher stopped")
}

impl Batcher {
    pub fn new(limits: BatchLimits, post: PostBatch) -> Batcher {
        Batcher {
            limits,
            post,
            tx: OnceLock::new(),
        }
    }

    /// Hands `payload` to the next batch and waits for its outcome.
    pub async fn submit(&self, payload: Vec<u8>) -> Result<(), SendError> {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.limits.items * 4);
            tokio::spawn(batch_loop(self.post.clone(), rx, self.limits));
            tx
        });
        let (done, wait) = oneshot::channel();
        tx.send((payload, done)).await.map_err(|_| stopped())?;
        wait.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn batch_loop(
    post: PostBatch,
    mut rx: mpsc::Receiver<(Vec<u8>, Waiter)>,
    limits: BatchLimits,
) {
    // An item that would have made the last batch too large starts the next.
    let mut carried: Option<(Vec<u8>, Waiter)> = None;
    loop {
        let Some((first, tx)) = (match carried.take() {
            Some(c) => Some(c),
            None => rx.recv().await,
        }) else {
            return;
        };
        let mut bytes = first.len();
        let (mut items, mut waiters) = (vec![first], vec![tx]);
        let deadline = tokio::time::Instant::now() + limits.linger;
        while items.len() < limits.items && bytes < limits.bytes {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((item, tx))) if bytes + item.len() > limits.bytes => {
                    carried = Some((item, tx));
                    break;
                }
                Ok(Some((item, tx))) => {
                    bytes += item.len();
                    items.push(item);
                    waiters.push(tx);
                }
                _ => break,
            }
        }
        let post = post.clone();
        tokio::spawn(async move {
            let n = waiters.len();
            let mut results = post(items).await;
            if results.len() != n {
                let e = SendError::retryable(
                    FailureReason::ServerError,
                    format!("a batch of {n} gave {} outcomes", results.len()),
                );
                results = vec![Err(e); n];
            }
            // One call: its failures that count for the breaker count once.
            let mut counted = false;
            for (w, mut r) in waiters.into_iter().zip(results) {
                if let Err(e) = &mut r {
                    if e.reason.counts_for_breaker() {
                        e.shared = counted;
                        counted = true;
                    }
                }
                let _ = w.send(r);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn concurrent_payloads_share_a_batch_and_each_gets_its_own_outcome() {
        let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
        let s = seen.clone();
        let post: PostBatch = Arc::new(move |items: Vec<Vec<u8>>| {
            s.lock().unwrap().push(items.len());
            Box::pin(async move {
                items
                    .iter()
                    .map(|i| match i.as_slice() {
                        b"bad" => Err(SendError::permanent(FailureReason::ClientError, "bad")),
                        _ => Ok(()),
                    })
                    .collect()
            })
        });
        let b = Arc::new(Batcher::new(
            BatchLimits {
                items: 3,
                bytes: 1 << 20,
                linger: Duration::from_millis(200),
            },
            post,
        ));
        let tasks: Vec<_> = ["a", "bad", "c", "d"]
            .into_iter()
            .map(|p| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(p.as_bytes().to_vec()).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap().map_err(|e| e.message));
        }
        assert_eq!(
            outcomes,
            vec![Ok(()), Err("bad".to_string()), Ok(()), Ok(())]
        );
        let mut sizes = seen.lock().unwrap().clone();
        sizes.sort();
        assert_eq!(sizes, vec![1, 3]);
    }

    /// Of one call's failures, the first that counts for the breaker counts;
    /// the others of that kind are marked shared, and refusals are left as
    /// they are (a refused finding first must not hide a failing service).
    #[tokio::test]
    async fn one_failed_call_counts_once_whatever_fails_first() {
        let post: PostBatch = Arc::new(move |items: Vec<Vec<u8>>| {
            Box::pin(async move {
                items
                    .iter()
                    .map(|i| match i.as_slice() {
                        b"bad" => Err(SendError::permanent(FailureReason::ClientError, "bad")),
                        _ => Err(SendError::retryable(FailureReason::ServerError, "503")),
                    })
                    .collect()
            })
        });
        let b = Arc::new(Batcher::new(
            BatchLimits {
                items: 4,
                bytes: 1 << 20,
                linger: Duration::from_millis(200),
            },
            post,
        ));
        let mut tasks = Vec::new();
        for p in ["bad", "a", "b", "c"] {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                b.submit(p.as_bytes().to_vec()).await
            }));
            // In this order within the one batch.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut got = Vec::new();
        for t in tasks {
            let e = t.await.unwrap().unwrap_err();
            got.push((e.reason, e.shared));
        }
        assert_eq!(
            got,
            vec![
                (FailureReason::ClientError, false),
                (FailureReason::ServerError, false),
                (FailureReason::ServerError, true),
                (FailureReason::ServerError, true),
            ]
        );
    }

    #[tokio::test]
    async fn an_item_that_would_pass_the_byte_limit_starts_the_next_batch() {
        let seen: Arc<Mutex<Vec<Vec<usize>>>> = Arc::default();
        let s = seen.clone();
        let post: PostBatch = Arc::new(move |items: Vec<Vec<u8>>| {
            s.lock().unwrap().push(items.iter().map(Vec::len).collect());
            let n = items.len();
            Box::pin(async move { vec![Ok(()); n] })
        });
        let b = Batcher::new(
            BatchLimits {
                items: 10,
                bytes: 100,
                linger: Duration::from_millis(200),
            },
            post,
        );
        let sizes = [60, 30, 50, 120, 10];
        let results =
            futures::future::join_all(sizes.iter().map(|n| b.submit(vec![b'x'; *n]))).await;
        assert!(results.iter().all(Result::is_ok));
        // 60+30 fit, 50 would pass 100; 50 alone, then 120 (alone: too big
        // for anything else), then 10.
        assert_eq!(
            *seen.lock().unwrap(),
            vec![vec![60, 30], vec![50], vec![120], vec![10]]
        );
    }
}
