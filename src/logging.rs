//! Log output: `tracing` lines (text or JSON) to stderr, through a small buffer.
//!
//! Every request logs one access line at info, as Qdrant does. Writing each line with its own
//! `write(2)` cost about a tenth of a node's CPU under load (measured: 6 100 → 7 000 searches/s
//! on one core with the line turned off), so lines are appended to an in-memory buffer instead and
//! written out in batches: by a flusher thread every [`FLUSH_EVERY`], at once when the buffer
//! passes [`FLUSH_BYTES`], and at once for every warning or error, so the lines that matter are
//! never held back. [`LogGuard`] flushes whatever is left when `main` returns. A `kill -9` can
//! lose at most the last [`FLUSH_EVERY`] of info lines; it never loses data, which is synced
//! separately.
//!
//! Text lines are tracing-subscriber's default format, written by [`text`] (without its styling
//! machinery, and with every field value escaped); JSON lines are tracing-subscriber's own.

use parking_lot::Mutex;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

pub mod text;

/// How long an info line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Buffered bytes that trigger a write right away.
pub const FLUSH_BYTES: usize = 64 * 1024;

/// Shared by the subscriber's writers and the flusher thread.
#[derive(Clone, Default)]
pub struct BufferedStderr {
    buf: Arc<Mutex<Vec<u8>>>,
    /// Held while writing, so batches reach stderr in order while new lines keep buffering.
    writing: Arc<Mutex<Vec<u8>>>,
}

impl BufferedStderr {
    /// Writes out everything buffered so far. Errors writing to stderr are ignored: there is
    /// nowhere left to report them.
    pub fn flush(&self) {
        let mut batch = self.writing.lock();
        std::mem::swap(&mut *batch, &mut *self.buf.lock());
        if !batch.is_empty() {
            let _ = std::io::stderr().lock().write_all(&batch);
            batch.clear();
        }
    }

    fn line(&self, urgent: bool) -> LineWriter {
        LineWriter {
            target: self.clone(),
            urgent,
        }
    }
}

/// Where one log line is written. tracing-subscriber formats a line whole and hands it over in
/// one `write_all`, so the line goes straight into the shared buffer: no copy of its own.
pub struct LineWriter {
    target: BufferedStderr,
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut buf = self.target.buf.lock();
            buf.extend_from_slice(bytes);
            buf.len() >= FLUSH_BYTES
        };
        if full {
            self.target.flush();
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.urgent {
            self.target.flush();
        }
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        self.line(true)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        self.line(*meta.level() <= Level::WARN)
    }
}

/// Flushes the log buffer when dropped; keep it alive for the whole of `main`.
pub struct LogGuard(BufferedStderr);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// The time a log line starts with: RFC 3339, UTC, microseconds, as tracing-subscriber's
/// `SystemTime` timer writes it (the tests hold the two to each other), printed by jiff into a
/// buffer of its own and written at once, where tracing-subscriber pads seven numbers one by one
/// through `core::fmt` (`docs/benchmarks.md`). jiff is in the build already (env_logger's).
#[derive(Clone, Copy, Default)]
pub struct UtcMicros;

impl FormatTime for UtcMicros {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        match jiff::Timestamp::try_from(std::time::SystemTime::now()) {
            Ok(now) => write!(w, "{now:.6}"),
            // A clock outside jiff's years (-9999 to 9999): tracing-subscriber's timer.
            Err(_) => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` (default `info`), text or `json` lines, colours
/// only on a terminal. Starts the flusher thread.
pub fn init(format: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,hnsw_rs=warn,sled=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let out = BufferedStderr::default();
    let flusher = out.clone();
    // If the thread cannot start, lines are still written: by size, by level and at exit.
    let _ = std::thread::Builder::new()
        .name("log-flusher".into())
        .spawn(move || loop {
            std::thread::sleep(FLUSH_EVERY);
            flusher.flush();
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(out.clone())
        .with_timer(UtcMicros)
        .with_ansi(ansi);
    if format.eq_ignore_ascii_case("json") {
        // Each line carries the current span (`request` with its request_id, method and path).
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else if ansi {
        builder.fmt_fields(text::Fields).init();
    } else {
        builder
            .fmt_fields(text::Fields)
            .event_format(text::PlainLine::new())
            .init();
    }
    LogGuard(out)
}

/// The current time as log lines give it (RFC 3339, UTC, microseconds).
pub fn now_rfc3339() -> String {
    let mut text = String::with_capacity(27);
    // Writing to a String cannot fail.
    let _ = UtcMicros.format_time(&mut Writer::new(&mut text));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_buffer_whole_and_urgent_ones_flush() {
        let out = BufferedStderr::default();
        {
            let mut w = out.line(false);
            w.write_all(b"one line\n").unwrap();
            assert_eq!(out.buf.lock().as_slice(), b"one line\n");
        }
        assert_eq!(
            out.buf.lock().as_slice(),
            b"one line\n",
            "an info line waits for the flusher"
        );
        drop(out.make_writer()); // urgent: flushes everything
        assert!(out.buf.lock().is_empty());
    }

    #[test]
    fn log_time_is_utc() {
        assert!(now_rfc3339().ends_with('Z'));
    }

    /// One reading of the clock by `timer`.
    fn time(timer: impl FormatTime) -> String {
        let mut text = String::new();
        timer.format_time(&mut Writer::new(&mut text)).unwrap();
        text
    }

    #[test]
    fn log_time_is_tracing_subscribers() {
        // Read between two readings of tracing-subscriber's own timer, the time is the same text
        // or later than the first and earlier than the second: both are fixed-width, so their
        // order as text is their order in time.
        for _ in 0..2000 {
            let before = time(tracing_subscriber::fmt::time::SystemTime);
            let ours = time(UtcMicros);
            let after = time(tracing_subscriber::fmt::time::SystemTime);
            assert_eq!(ours.len(), before.len(), "{ours} / {before}");
            assert!(before <= ours && ours <= after, "{before} {ours} {after}");
        }
    }

    #[test]
    fn log_time_keeps_six_digits_and_truncates() {
        let at = |s, ns| format!("{:.6}", jiff::Timestamp::new(s, ns).unwrap());
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_825_599, 999_999_999), "2000-02-29T11:59:59.999999Z");
        assert_eq!(at(1_796_126_400, 1_000), "2026-12-01T12:00:00.000001Z");
    }
}
