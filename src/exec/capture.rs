//! Reading a child's pipe with a byte cap: the first `cap` bytes are kept, the rest is read
//! and dropped, so a program printing forever neither fills our memory nor blocks on a full
//! pipe.

use std::io::{ErrorKind, Read};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

/// What a pipe delivered, up to the cap.
#[derive(Debug, Default, Clone)]
pub(crate) struct Captured {
    pub bytes: Vec<u8>,
    /// More arrived than was kept.
    pub truncated: bool,
}

/// A pipe being read on its own thread.
pub(crate) struct Capture {
    shared: Arc<Mutex<Captured>>,
    done: Receiver<()>,
}

/// Read `source` until EOF on a background thread, keeping at most `cap` bytes.
pub(crate) fn capture(mut source: impl Read + Send + 'static, cap: usize) -> Capture {
    let shared = Arc::new(Mutex::new(Captured::default()));
    let (tx, done) = mpsc::channel();
    let sink = Arc::clone(&shared);
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let mut out = sink.lock().unwrap_or_else(PoisonError::into_inner);
                    let room = cap.saturating_sub(out.bytes.len());
                    out.bytes.extend_from_slice(&buf[..n.min(room)]);
                    out.truncated |= n > room;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    Capture { shared, done }
}

impl Capture {
    /// What was read, once the pipe reaches EOF or `deadline` passes, whichever is first.
    /// After the deadline the thread is left to finish on its own (a process that escaped
    /// the kill may still hold the pipe); its later bytes are dropped.
    pub(crate) fn finish(self, deadline: Instant) -> Captured {
        let _ = self
            .done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()));
        let mut out = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keeps_the_first_bytes_and_reads_the_rest() {
        let source = std::io::repeat(b'x').take(1_000_000);
        let got = capture(source, 1000).finish(Instant::now() + Duration::from_secs(10));
        assert_eq!(got.bytes.len(), 1000);
        assert!(got.truncated);
        let got = capture(&b"hello"[..], 1000).finish(Instant::now() + Duration::from_secs(10));
        assert_eq!(got.bytes, b"hello");
        assert!(!got.truncated);
    }
}
