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

use parking_lot::Mutex;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Level, Metadata};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::EnvFilter;

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
        .with_timer(CachedTime)
        .with_ansi(ansi);
    if format.eq_ignore_ascii_case("json") {
        // Each line carries the current span (`request` with its request_id, method and path).
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.fmt_fields(PlainFields).init();
    }
    LogGuard(out)
}

/// Line timestamps exactly as tracing-subscriber's default `SystemTime` timer writes them
/// (RFC 3339, UTC, microseconds: `2026-11-26T01:18:48.123456Z`), with the date and time of
/// day formatted once a second per thread instead of for every line (~2k instructions each).
struct CachedTime;

impl FormatTime for CachedTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        thread_local! {
            static PREFIX: std::cell::RefCell<(u64, String)> =
                const { std::cell::RefCell::new((u64::MAX, String::new())) };
        }
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since_epoch.as_secs();
        PREFIX.with_borrow_mut(|(at, prefix)| {
            if *at != secs {
                *at = secs;
                prefix.clear();
                write_utc_seconds(prefix, secs)?;
            }
            write!(w, "{prefix}.{:06}Z", since_epoch.subsec_micros())
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a count of seconds since the Unix epoch (UTC, proleptic Gregorian;
/// days to a civil date as in Howard Hinnant's `civil_from_days`).
pub(crate) fn write_utc_seconds(out: &mut String, secs: u64) -> std::fmt::Result {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The text format's fields, as tracing-subscriber's `DefaultFields` writes them with colours
/// off (`message` bare, then `name=value` separated by spaces, control characters escaped) but
/// without its per-field styling and per-character escaping calls: ~4k instructions of every
/// request's span and access line.
struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            separator: "",
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    separator: &'static str,
    result: std::fmt::Result,
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() != "message" {
            return self.record_debug(field, &value);
        }
        if self.start(field) {
            self.result = Escaping(&mut self.writer).write_str(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_digits(field, itoa::Buffer::new().format(value))
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_digits(field, itoa::Buffer::new().format(value))
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.start(field) {
            // One formatting pass: the value's text runs through the escaping writer.
            self.result = write!(Escaping(&mut self.writer), "{value:?}");
        }
    }
}

impl PlainVisitor<'_> {
    /// Writes the separator and `name=` (nothing before a message); false to skip the field.
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        let separator = std::mem::replace(&mut self.separator, " ");
        self.result = if name == "message" {
            self.writer.write_str(separator)
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            (self.writer.write_str(separator))
                .and_then(|()| self.writer.write_str(name))
                .and_then(|()| self.writer.write_char('='))
        };
        self.result.is_ok()
    }

    /// An integer's digits, which need no escaping.
    fn record_digits(&mut self, field: &Field, digits: &str) {
        if self.start(field) {
            self.result = self.writer.write_str(digits);
        }
    }
}

/// Writes text through to `W` with the control characters a terminal could act on escaped (as
/// tracing-subscriber does), checked a whole piece at a time.
struct Escaping<W>(W);

impl<W: std::fmt::Write> std::fmt::Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let risky = |c: char| {
            matches!(
                c,
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
            )
        };
        // Byte-wise first, without an early exit so that it vectorises: a risky ASCII byte, or
        // 0xC2, the lead byte of U+0080..U+00BF.
        let suspect = s.bytes().fold(false, |any, b| {
            any | matches!(b, 0x07 | 0x08 | 0x0c | 0x1b | 0x7f | 0xc2)
        });
        if !suspect || !s.contains(risky) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c if risky(c) => write!(self.0, "\\x{:02x}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
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
    fn cached_time_reads_like_the_default_timer() {
        let render = |timer: &dyn FormatTime| {
            let mut s = String::new();
            timer.format_time(&mut Writer::new(&mut s)).unwrap();
            s
        };
        // Same second (retried across a boundary): same text up to the microseconds.
        let (mine, theirs) = (0..10)
            .map(|_| {
                (
                    render(&CachedTime),
                    render(&tracing_subscriber::fmt::time::SystemTime),
                )
            })
            .find(|(a, b)| a[..19] == b[..19])
            .expect("ten tries cannot all straddle a second");
        assert_eq!(mine.len(), theirs.len(), "{mine} vs {theirs}");
        assert_eq!(mine[..19], theirs[..19], "{mine} vs {theirs}");
        assert!(mine.ends_with('Z') && mine.as_bytes()[19] == b'.', "{mine}");
        let day = |secs| {
            let mut s = String::new();
            write_utc_seconds(&mut s, secs).unwrap();
            s
        };
        assert_eq!(day(0), "1970-01-01T00:00:00");
        assert_eq!(day(951_782_399), "2000-02-28T23:59:59");
        assert_eq!(day(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(day(4_107_542_400), "2100-03-01T00:00:00");
        assert_eq!(day(1_795_650_128), "2026-11-25T23:42:08");
    }

    #[test]
    fn plain_fields_read_like_the_default_ones() {
        use tracing_subscriber::layer::SubscriberExt;
        let render = |fields: Option<PlainFields>, raw: &'static str| {
            let out = BufferedStderr::default();
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(out.clone());
            let line = || {
                let span = tracing::info_span!("request", request_id = %"ab-1", r#type = "x\x1b[31m", raw = %raw);
                let _in = span.enter();
                tracing::info!(status = 200u16, ms = %format_args!("{:.3}", 0.1234), "request finished");
                tracing::info!(error = "bell\x07 and \\", "plain {}", 5);
            };
            match fields {
                Some(f) => tracing::subscriber::with_default(
                    tracing_subscriber::registry().with(layer.fmt_fields(f)),
                    line,
                ),
                None => tracing::subscriber::with_default(
                    tracing_subscriber::registry().with(layer),
                    line,
                ),
            }
            let text = String::from_utf8(out.buf.lock().clone()).unwrap();
            text
        };
        let (plain, default) = (render(Some(PlainFields), "y"), render(None, "y"));
        assert!(
            plain.contains("request finished status=200 ms=0.123"),
            "{plain}"
        );
        assert_eq!(plain, default);
        // Unlike the default with colours off, control characters in displayed values are
        // escaped too: a client's text cannot drive the terminal of whoever reads the log.
        let plain = render(Some(PlainFields), "y\x1b[0m\u{85}");
        assert!(plain.contains(r"raw=y\x1b[0m\u{85}"), "{plain}");
    }
}
