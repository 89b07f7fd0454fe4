//! The text log line, written directly: what tracing-subscriber's default (`Full`) format and
//! its `DefaultFields` write with colours off, byte for byte (the tests hold both to it), with
//! one addition: every field value has the control characters a terminal acts on escaped, not
//! only the message, so that text a client sent (a collection name, a rejected id in an error)
//! cannot drive the terminal of whoever reads the log.
//!
//! Both are tracing-subscriber's extension points ([`FormatEvent`], [`FormatFields`]); they
//! exist because the default ones paint every piece of a line through nu-ansi-term even with
//! colours off, and escape the message a character at a time: with the request span's fields
//! and the access line, that was a measurable part of a search request's instructions
//! (`docs/benchmarks.md`). On a terminal, tracing-subscriber's own format writes the line, in
//! colour, around the same [`Fields`].

use super::UtcMicros;
use std::cell::RefCell;
use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// A line: time, level, the spans it is in with their fields, target, its own fields.
#[derive(Default)]
pub struct PlainLine<T = UtcMicros> {
    pub timer: T,
}

impl PlainLine {
    /// Lines timed as tracing-subscriber times them (RFC 3339, UTC, microseconds).
    pub fn new() -> PlainLine {
        PlainLine { timer: UtcMicros }
    }
}

impl<S, N, T> FormatEvent<S, N> for PlainLine<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record's own level and target, not the bridge's.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if self.timer.format_time(&mut w).is_err() {
            w.write_str("<unknown time>")?;
        }
        w.write_str(match *meta.level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => "  INFO ",
            Level::WARN => "  WARN ",
            Level::ERROR => " ERROR ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            let mut any = false;
            for span in scope.from_root() {
                any = true;
                w.write_str(span.metadata().name())?;
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        w.write_char('{')?;
                        w.write_str(fields)?;
                        w.write_char('}')?;
                    }
                }
                w.write_char(':')?;
            }
            if any {
                w.write_char(' ')?;
            }
        }
        w.write_str(meta.target())?;
        w.write_str(": ")?;
        ctx.format_fields(w.by_ref(), event)?;
        w.write_char('\n')
    }
}

/// Fields as `name=value` pairs (the message bare, first), every value escaped.
#[derive(Default)]
pub struct Fields;

impl<'w> FormatFields<'w> for Fields {
    /// The fields are written to a buffer of the thread's first and handed on in one piece: a
    /// span's go to a `String` of their own that starts empty, which written to piece by piece
    /// grows (and moves) three or four times for the request span (`docs/benchmarks.md`).
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        thread_local!(static BUFFER: RefCell<String> = const { RefCell::new(String::new()) });
        /// What a buffer may keep between lines.
        const KEPT: usize = 4096;
        BUFFER.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut text) => {
                text.clear();
                let written = write_fields(Writer::new(&mut *text), fields);
                let handed = written.and_then(|()| writer.write_str(&text));
                text.shrink_to(KEPT);
                handed
            }
            // Fields written while this thread writes others (a value's `Debug` that logs).
            Err(_) => write_fields(writer, fields),
        })
    }
}

fn write_fields<R: RecordFields>(writer: Writer<'_>, fields: R) -> fmt::Result {
    let mut visitor = Visitor {
        out: Escaping(writer),
        empty: true,
        result: Ok(()),
    };
    fields.record(&mut visitor);
    visitor.result
}

struct Visitor<'w> {
    out: Escaping<Writer<'w>>,
    empty: bool,
    result: fmt::Result,
}

impl<'w> Visitor<'w> {
    /// Writes one field, after a space unless it is the first.
    fn field(&mut self, write: impl FnOnce(&mut Escaping<Writer<'w>>) -> fmt::Result) {
        if self.result.is_ok() {
            let space = if std::mem::take(&mut self.empty) {
                Ok(())
            } else {
                self.out.0.write_char(' ')
            };
            self.result = space.and_then(|()| write(&mut self.out));
        }
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }

    /// An error with its sources, as tracing-subscriber writes it.
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() {
            let empty = std::mem::take(&mut self.empty);
            let mut default = DefaultVisitor::new(Writer::new(&mut self.out), empty);
            default.record_error(field, value);
            self.result = default.finish();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            // The `log` record's metadata, which the line has written already.
            name if name.starts_with("log.") => {}
            "message" => self.field(|out| write!(out, "{value:?}")),
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                // Names are identifiers: nothing to escape.
                self.field(|out| {
                    out.0.write_str(name)?;
                    out.0.write_char('=')?;
                    write!(out, "{value:?}")
                })
            }
        }
    }
}

/// Writes text through to `W` with the control characters a terminal could act on escaped (as
/// tracing-subscriber does for messages), checked a whole piece at a time.
struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
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

/// Log lines kept in memory, for the tests of what a line says.
#[cfg(test)]
pub(crate) mod capture {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Capture {
        /// Everything written so far.
        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::capture::Capture;
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// A fixed time, so that two formats' lines can be compared.
    struct Noon;
    impl FormatTime for Noon {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-11-30T12:00:00.000000Z")
        }
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot open the segment")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Lines of every shape the node writes: in no span, in the request span, in nested spans,
    /// each level, fields of every kind, an error with a source, raw and `log.` names.
    fn lines() {
        tracing::info!("shoal is serving");
        tracing::warn!(listen = %"127.0.0.1:6333", peers = 3u64, ready = true, "started {}", 1);
        let span = tracing::info_span!("request", request_id = %"ab-1", method = %"POST", path = %"/collections/c/points/search");
        let _in = span.enter();
        tracing::info!(status = 200u16, ms = 0.123, "request finished");
        tracing::debug!(r#type = "keyword", name = "quoted \"str\"", "field");
        let inner = tracing::info_span!("merge", segments = 2i64);
        let _inner = inner.enter();
        let io = std::io::Error::other("disk full");
        tracing::error!(
            error = &Outer(io) as &(dyn std::error::Error + 'static),
            "build failed"
        );
        tracing::trace!(delta = -1.5f64, log.target = "ignored", "trace line");
        let empty = tracing::info_span!("empty");
        let _empty = empty.enter();
        tracing::info!(x = 1, "");
    }

    /// What `lines` writes through `layer`.
    fn render<N, E>(fields: N, event: E) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
        E: FormatEvent<tracing_subscriber::Registry, N> + Send + Sync + 'static,
    {
        let out = Capture::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(out.clone())
            .fmt_fields(fields)
            .event_format(event);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), lines);
        out.text()
    }

    #[test]
    fn lines_are_tracing_subscribers_own_without_colours() {
        let ours = render(Fields, PlainLine { timer: Noon });
        let theirs = render(
            tracing_subscriber::fmt::format::DefaultFields::new(),
            tracing_subscriber::fmt::format().with_timer(Noon),
        );
        assert_eq!(ours, theirs);
        assert!(ours.contains(
            "  INFO request{request_id=ab-1 method=POST path=/collections/c/points/search}: shoal::logging::text::tests: request finished status=200 ms=0.123\n"
        ), "{ours}");
        assert_eq!(ours.lines().count(), 7, "{ours}");
    }

    #[test]
    fn every_value_is_escaped() {
        let out = Capture::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(out.clone())
            .fmt_fields(Fields)
            .event_format(PlainLine { timer: Noon });
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let span = tracing::info_span!("request", path = %"/c/x\x1b[0m\u{85}");
            let _in = span.enter();
            tracing::info!(name = %"bell\x07", "plain \x08 message");
        });
        let text = out.text();
        assert!(
            text.contains(r"request{path=/c/x\x1b[0m\u{85}}: ")
                && text.contains(r"plain \x08 message name=bell\x07"),
            "{text}"
        );
    }
}
