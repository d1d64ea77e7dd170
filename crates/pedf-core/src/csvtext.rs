//! Plain CSV text with located diagnostics: the shared reader of pedf's input files (day
//! inputs, weather files, histories). Fields are comma separated, no quoting; blank lines and
//! lines starting with `#` are skipped; every field keeps its byte offset so a problem can be
//! reported as file:line:column.

use chrono::{DateTime, Utc};

use crate::config::{Diagnostic, SourceMap};
use crate::time::{parse_rfc3339, ParkClock};
use crate::validate::Severity;

/// A named file's bytes, as the binary read it.
#[derive(Debug, Clone, Copy)]
pub struct InputFile<'a> {
    /// Path as shown in diagnostics.
    pub name: &'a str,
    /// Content.
    pub bytes: &'a [u8],
}

/// A file being read: where its diagnostics go and how to locate a byte offset.
pub struct Located<'a> {
    /// File name as shown in diagnostics.
    pub name: &'a str,
    /// Line index of the file's text.
    pub map: SourceMap<'a>,
    /// Where diagnostics go.
    pub out: &'a mut Vec<Diagnostic>,
}

impl Located<'_> {
    /// Records an error at byte `offset` of the file.
    pub fn error(&mut self, offset: usize, message: String, hint: &str) {
        self.push(Severity::Error, offset, message, hint);
    }

    /// Reads an interval start (RFC 3339 with offset, on the park's clock) from a field, or
    /// records the error located at the field.
    pub fn interval_start(
        &mut self,
        field: (usize, &str),
        clock: &ParkClock,
    ) -> Option<DateTime<Utc>> {
        let (offset, text) = field;
        let hint = "interval starts on the park's clock, RFC 3339 with offset, e.g. 2026-06-21T12:00:00+08:00";
        let Ok(t) = parse_rfc3339(text) else {
            self.error(
                offset,
                format!("`{text}` is not an RFC 3339 time with an offset"),
                hint,
            );
            return None;
        };
        if clock.interval_start(t) != t {
            self.error(
                offset,
                format!("{text} is not the start of a {} interval", clock.interval),
                hint,
            );
            return None;
        }
        Some(t)
    }

    /// Records a warning at byte `offset` of the file.
    pub fn warning(&mut self, offset: usize, message: String, hint: &str) {
        self.push(Severity::Warning, offset, message, hint);
    }

    fn push(&mut self, severity: Severity, offset: usize, message: String, hint: &str) {
        let (line, column) = self.map.locate(offset);
        self.out.push(Diagnostic {
            severity,
            file: self.name.to_string(),
            line,
            column,
            message,
            hint: Some(hint.to_string()),
        });
    }
}

/// A parsed CSV line: its fields with their byte offsets in the file.
pub struct Row<'t> {
    /// Byte offset of the line's start.
    pub line_offset: usize,
    /// Fields, trimmed, with the byte offset of each.
    pub fields: Vec<(usize, &'t str)>,
}

/// Splits CSV text into rows, skipping blank lines and `#` comments.
pub fn rows(text: &str) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\n', '\r']);
        let start = offset;
        offset += raw.len();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut fields = Vec::new();
        let mut pos = start;
        for f in line.split(',') {
            let lead = f.len() - f.trim_start().len();
            fields.push((pos + lead, f.trim()));
            pos += f.len() + 1;
        }
        out.push(Row {
            line_offset: start,
            fields,
        });
    }
    out
}

/// The file as text, or a located diagnostic at its first byte that is not UTF-8.
pub fn text_of<'b>(file: InputFile<'b>, out: &mut Vec<Diagnostic>) -> Option<&'b str> {
    // Excel's "CSV UTF-8" starts the file with a byte-order mark: not part of the header.
    let bytes = file
        .bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(file.bytes);
    match crate::config::decode_utf8(file.name, bytes) {
        Ok(t) => Some(t),
        Err(d) => {
            out.push(d);
            None
        }
    }
}
