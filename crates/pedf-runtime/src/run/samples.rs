//! The samples' writer: every cycle's samples go to the store through a connection and a
//! thread of their own, so a slow or full disk never holds the control cycle. The cycle hands
//! a batch over without waiting; a writer that falls behind (its queue of 64 batches full)
//! has the newest batch dropped and counted, and its last error is the cycle's fault.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use pedf_store::{Sample, Store};

/// What the writer has met.
#[derive(Debug, Default, Clone)]
pub(super) struct WriterState {
    /// The last write's error, while writes fail.
    pub last_error: Option<String>,
    /// Samples dropped because the writer was behind.
    pub dropped: u64,
}

/// The handle the cycle keeps.
pub(super) struct SampleWriter {
    tx: Option<SyncSender<Vec<Sample>>>,
    state: Arc<Mutex<WriterState>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SampleWriter {
    /// Opens its own connection to `path` (with `max_pages`, a full disk in tests) and
    /// starts the thread.
    pub(super) fn start(path: &std::path::Path, max_pages: Option<i64>) -> Result<Self, String> {
        let mut store = Store::open(path).map_err(|e| e.to_string())?;
        if let Some(p) = max_pages {
            store.set_max_pages_for_test(p);
        }
        let (tx, rx) = sync_channel::<Vec<Sample>>(64);
        let state = Arc::new(Mutex::new(WriterState::default()));
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("pedf-samples".into())
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    let r = store.insert_samples(&batch);
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    match r {
                        Ok(_) => s.last_error = None,
                        Err(e) => {
                            tracing::error!(error = %e, "samples not stored; control goes on");
                            s.last_error = Some(e.to_string());
                        }
                    }
                }
            })
            .map_err(|e| format!("the samples' writer thread: {e}"))?;
        Ok(SampleWriter {
            tx: Some(tx),
            state,
            thread: Some(thread),
        })
    }

    /// Hands a batch over without waiting.
    pub(super) fn send(&self, batch: Vec<Sample>) {
        let Some(tx) = &self.tx else { return };
        let n = batch.len() as u64;
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(batch) {
            self.state.lock().unwrap_or_else(|p| p.into_inner()).dropped += n;
        }
    }

    /// What the writer has met so far.
    pub(super) fn state(&self) -> WriterState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes what is queued and stops the thread (shutdown).
    pub(super) fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SampleWriter {
    fn drop(&mut self) {
        self.finish();
    }
}
