//! The storage thread: every room's reads and writes go through it, and appends that
//! arrive together are stored in one transaction — one disk sync for all of them
//! (group commit), however many rooms wrote.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::storage::{StorageError, Store, Stored};

/// A storage failure as rooms see it (one failed group commit fails every append in
/// it, so the error is shared).
pub(crate) type Shared<T> = Result<T, Arc<StorageError>>;

enum Request {
    Load {
        doc: String,
        reply: oneshot::Sender<Shared<Option<Stored>>>,
    },
    Append {
        doc: String,
        update: Vec<u8>,
        reply: oneshot::Sender<Shared<u64>>,
    },
    Compact {
        doc: String,
        snapshot: Vec<u8>,
        up_to: u64,
        reply: oneshot::Sender<Shared<()>>,
    },
}

/// The appends one group commit may take.
const MAX_GROUP: usize = 512;

/// A handle to the storage thread; the thread stops when every handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    tx: mpsc::UnboundedSender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Load { doc, .. } => write!(f, "Load({doc})"),
            Request::Append { doc, update, .. } => write!(f, "Append({doc}, {})", update.len()),
            Request::Compact { doc, up_to, .. } => write!(f, "Compact({doc}, {up_to})"),
        }
    }
}

impl Writer {
    /// Starts the thread owning `store`.
    pub fn start(
        store: Box<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("chorus-storage".into())
            .spawn(move || run(store, rx, &metrics))
            .expect("spawning the storage thread");
        (Writer { tx }, thread)
    }

    pub async fn load(&self, doc: &str) -> Shared<Option<Stored>> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::Load {
            doc: doc.to_owned(),
            reply,
        });
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Stores `update` durably; returns its seq in the document's log.
    pub async fn append(&self, doc: &str, update: Vec<u8>) -> Shared<u64> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::Append {
            doc: doc.to_owned(),
            update,
            reply,
        });
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Replaces the log up to `up_to` by `snapshot`.
    pub async fn compact(&self, doc: &str, snapshot: Vec<u8>, up_to: u64) -> Shared<()> {
        let (reply, rx) = oneshot::channel();
        self.request(Request::Compact {
            doc: doc.to_owned(),
            snapshot,
            up_to,
            reply,
        });
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    fn request(&self, r: Request) {
        // A send fails only once the thread is gone; the reply channel then reports it.
        let _ = self.tx.send(r);
    }
}

fn stopped() -> Arc<StorageError> {
    Arc::new(StorageError::Io {
        path: Default::default(),
        source: std::io::Error::other("the storage thread stopped"),
    })
}

fn run(mut store: Box<dyn Store>, mut rx: mpsc::UnboundedReceiver<Request>, metrics: &Metrics) {
    let mut appends: Vec<(String, Vec<u8>, oneshot::Sender<Shared<u64>>)> = Vec::new();
    let mut next: Option<Request> = None;
    loop {
        let request = match next.take() {
            Some(r) => r,
            None => match rx.blocking_recv() {
                Some(r) => r,
                None => return,
            },
        };
        match request {
            Request::Load { doc, reply } => {
                let _ = reply.send(store.load(&doc).map_err(Arc::new));
            }
            Request::Compact {
                doc,
                snapshot,
                up_to,
                reply,
            } => {
                let _ = reply.send(store.compact(&doc, &snapshot, up_to).map_err(Arc::new));
            }
            Request::Append { doc, update, reply } => {
                // Take every append already waiting: they share one commit.
                appends.push((doc, update, reply));
                while appends.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(Request::Append { doc, update, reply }) => {
                            appends.push((doc, update, reply))
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let started = Instant::now();
                let batch: Vec<(&str, &[u8])> = appends
                    .iter()
                    .map(|(d, u, _)| (d.as_str(), u.as_slice()))
                    .collect();
                let result = store.append_many(&batch).map_err(Arc::new);
                metrics
                    .persist_seconds
                    .observe(started.elapsed().as_secs_f64());
                match result {
                    Ok(seqs) => {
                        for ((_, _, reply), seq) in appends.drain(..).zip(seqs) {
                            let _ = reply.send(Ok(seq));
                        }
                    }
                    Err(e) => {
                        for (_, _, reply) in appends.drain(..) {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}
